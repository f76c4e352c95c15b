"""Model files: each format bertfit reads and writes (Hugging Face folders, the tutorial's `bert_model.pth`),
tokenizer files, loading a model from any of them, saving one, and the model card of a finished run.

`names` holds the table machinery; `hf` and `tutorial` one name table each; `tokenizer_files`, `loading`,
`saving` and `model_card` do what they say. `bertfit.pretrained` re-exports the public functions.
"""
