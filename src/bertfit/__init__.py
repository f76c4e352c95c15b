"""bertfit: fine-tune BERT-family encoders on GLUE and SQuAD."""
__version__ = "0.1.0"
