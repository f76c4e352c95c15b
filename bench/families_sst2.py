"""Every encoder family from random init: what the CLI learns of SST-2, and its speed against transformers.

    python bench/families_sst2.py learn --data-dir ../shared/data/glue --threads 1     # untimed: learning and answers
    python bench/families_sst2.py models --data-dir ../shared/data/glue --models-dir family-models   # untimed
    python bench/families_sst2.py speed --data-dir ../shared/data/glue --models-dir family-models    # timed: quiet

One representative model of each family (FAMILIES), all at one size (--hidden 256, --layers 4, --heads 4,
--intermediate 1024), each with a tokenizer of its family's kind trained on SST-2's training sentences:
WordPiece and byte-level BPE with `bertfit tokenizer`, the SentencePiece-style Unigrams (XLM-R's, DeBERTa-v3's)
and ModernBERT's BPE with `[CLS]`/`[SEP]` with the `tokenizers` library (`bertfit tokenizer` makes neither).
bertfit makes new models only in `pretrain` (BERT and RoBERTa), so the model is made as a user of another
family would: transformers' config of the family, its own random init, `save_pretrained`, and the tokenizer
files beside it (`checkpoints.tokenizer_files.save_tokenizer`).

learn (untimed, figures families-sst2): through the CLI, `bertfit glue sst2 --model DIR --max-train-samples
2000` from the base model's random weights (bertfit adds the classifier and trains everything), dev accuracy
against the majority class of dev; then on --sentences dev sentences `bertfit classify` (torch, fp32), a running
`bertfit serve` (127.0.0.1, POST /v1/classify, every wait bounded) and `bertfit export` + `bertfit classify
--engine onnx` must give the same label and a probability within --tolerance of classify's.

speed (timed, figures families-speed): per family, the same classification model (random weights, attention
dropout 0 in its config.json) trained on the same first --samples rows, one epoch, by `training.fit` and by
transformers' Trainer with bench/glue_speed.py's same-math settings (fp32, exact dense AdamW, batch, schedule,
length limit), then dev classified by `inference.classify` (tokenizing included) and by
`transformers.pipeline("text-classification")` with the same batch size. Each side of each family runs in a
child process of its own. The last line is `ratio train X.XX eval Y.YY`: the smallest ratio over the families,
bertfit's throughput over transformers' (higher is better).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import glue_speed  # noqa: E402


@dataclass(frozen=True)
class FamilyRow:
    name: str  # how the tables name it
    family: str  # bertfit's family (checkpoints.families)
    tokenizer: str  # its kind: wordpiece or bpe (`bertfit tokenizer --kind`), or one train_library_tokenizer makes
    config: str  # transformers' config class
    fields: dict  # the family's own config.json choices beyond the common size (its representative parts)


FAMILIES = (
    FamilyRow("bert", "bert", "wordpiece", "BertConfig", {}),
    FamilyRow("distilbert", "distilbert", "wordpiece", "DistilBertConfig", {}),
    FamilyRow("roberta", "roberta", "bpe", "RobertaConfig", {"type_vocab_size": 1}),
    FamilyRow("xlm-roberta", "xlm-roberta", "unigram", "XLMRobertaConfig", {"type_vocab_size": 1}),
    FamilyRow("electra", "electra", "wordpiece", "ElectraConfig", {"embedding_size": 128}),
    # v3: disentangled attention both ways over 256 log buckets, no absolute positions, no token types
    FamilyRow("deberta-v3", "deberta-v2", "deberta-unigram", "DebertaV2Config",
              {"relative_attention": True, "position_buckets": 256, "max_relative_positions": -1,
               "pos_att_type": ["p2c", "c2p"], "share_att_key": True, "norm_rel_ebd": "layer_norm",
               "position_biased_input": False, "type_vocab_size": 0}),
    # ModernBERT-base's parts: a 128-token window, every third layer global (layers 0 and 3 of 4)
    FamilyRow("modernbert", "modernbert", "bpe-cls", "ModernBertConfig",
              {"local_attention": 128, "global_attn_every_n_layers": 3}),
)
BY_NAME = {row.name: row for row in FAMILIES}


# ---- tokenizers ---------------------------------------------------------------------------------

def train_library_tokenizer(kind: str, sentences: list[str], vocab_size: int):
    """The kinds `bertfit tokenizer` does not make, with the `tokenizers` library as their families' files have
    them: XLM-R's Unigram (<s> a </s></s> b </s>), DeBERTa-v3's Unigram ([CLS] a [SEP] b [SEP]) and ModernBERT's
    byte-level BPE with BERT's special tokens."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, \
        trainers

    if kind == "bpe-cls":
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        tokenizer.train_from_iterator(sentences, trainers.BpeTrainer(
            vocab_size=vocab_size, special_tokens=["[UNK]", "[CLS]", "[SEP]", "[PAD]", AddedToken("[MASK]", lstrip=True)],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
        cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
        tokenizer.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=True),
            processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                          special_tokens=[("[CLS]", cls), ("[SEP]", sep)])])
        return tokenizer
    tokenizer = Tokenizer(models.Unigram())
    if kind == "unigram":
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                           pre_tokenizers.Metaspace()])
        tokenizer.decoder = decoders.Metaspace()
        specials, unk = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"], "<unk>"
        single, pair, ends = "<s> $A </s>", "<s> $A </s> </s> $B </s>", ("<s>", "</s>")
    else:  # DeBERTa-v3's normaliser, as transformers' DebertaV2Tokenizer builds it
        tokenizer.normalizer = normalizers.Sequence([normalizers.Replace(Regex(r"\s{2,}|[\n\r\t]"), " "),
                                                     normalizers.NFC(), normalizers.Strip(left=False, right=True)])
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
        tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
        specials, unk = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"], "[UNK]"
        single, pair, ends = "[CLS]:0 $A:0 [SEP]:0", "[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1", ("[CLS]", "[SEP]")
    tokenizer.train_from_iterator(sentences, trainers.UnigramTrainer(
        vocab_size=vocab_size, special_tokens=specials, unk_token=unk, show_progress=False))
    tokenizer.post_processor = processors.TemplateProcessing(
        single=single, pair=pair, special_tokens=[(t, tokenizer.token_to_id(t)) for t in ends])
    return tokenizer


def make_tokenizer(kind: str, text_file: Path, sentences: list[str], out: Path, vocab_size: int, threads: int):
    """A tokenizer of `kind` trained on the training sentences, written to `out` (tokenizer.json)."""
    from bertfit.checkpoints.tokenizer_files import load_tokenizer
    from bertfit.files import write_atomic

    if kind in ("wordpiece", "bpe"):
        cli(["tokenizer", "--train-file", str(text_file), "--output", str(out), "--kind", kind,
             "--vocab-size", str(vocab_size), *(["--lowercase"] if kind == "wordpiece" else []), "--quiet"], threads)
    else:
        write_atomic(out, train_library_tokenizer(kind, sentences, vocab_size).to_str(pretty=True))
    return load_tokenizer(out)


# ---- models -------------------------------------------------------------------------------------

def transformers_config(row: FamilyRow, args, tokenizer, **more):
    """The family's transformers config at the bench's size, its special ids from the tokenizer."""
    import transformers

    from bertfit.tokenization import special_ids

    ids = special_ids(tokenizer)
    size = dict(hidden_size=args.hidden, num_hidden_layers=args.layers, num_attention_heads=args.heads,
                intermediate_size=args.intermediate)
    if row.family == "distilbert":  # DistilBERT's config names them otherwise
        size = dict(dim=args.hidden, n_layers=args.layers, n_heads=args.heads, hidden_dim=args.intermediate)
    special = dict(pad_token_id=ids.pad)
    if row.family == "modernbert":
        special.update(cls_token_id=ids.cls, sep_token_id=ids.sep, bos_token_id=ids.cls, eos_token_id=ids.sep)
    if row.family in ("roberta", "xlm-roberta"):
        special.update(bos_token_id=ids.cls, eos_token_id=ids.sep)
    # RoBERTa's positions start after the padding id: its table holds pad_token_id + 1 rows more
    positions = args.max_positions + (ids.pad + 1 if row.family in ("roberta", "xlm-roberta") else 0)
    return getattr(transformers, row.config)(vocab_size=tokenizer.get_vocab_size(), max_position_embeddings=positions,
                                             **size, **special, **row.fields, **more)


def save_model(row: FamilyRow, args, tokenizer, folder: Path, head: str, seed: int, **more) -> Path:
    """transformers' own random init of the family (the base model, or with head "classification" its
    sequence classifier), saved with the tokenizer files AutoTokenizer and bertfit read."""
    import torch
    import transformers

    from bertfit.checkpoints.families import FAMILIES as REGISTRY
    from bertfit.checkpoints.tokenizer_files import save_tokenizer

    config = transformers_config(row, args, tokenizer, **more)
    torch.manual_seed(seed)
    cls = transformers.AutoModel if head == "base" else transformers.AutoModelForSequenceClassification
    model = cls.from_config(config)
    folder.mkdir(parents=True)
    model.save_pretrained(str(folder))
    family = REGISTRY[row.family]
    save_tokenizer(tokenizer, folder, family.tokenizer_class, token_types=family.name != "modernbert")
    return folder


# ---- the CLI ------------------------------------------------------------------------------------

def cli_env(threads: int) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": str(threads),
            "PYTHONPATH": os.pathsep.join([str(common.ROOT / "src"), os.environ.get("PYTHONPATH", "")])}


def cli(argv: list[str], threads: int, timeout: float = 3600) -> str:
    """`bertfit ARGV` in a child process on `threads` threads; its stdout, or exit naming the command."""
    command = [sys.executable, "-m", "bertfit", *argv]
    print(f"   $ bertfit {' '.join(argv)}", file=sys.stderr, flush=True)
    done = subprocess.run(command, capture_output=True, text=True, env=cli_env(threads), timeout=timeout)
    if done.returncode != 0:
        raise Failed(f"`bertfit {' '.join(argv)}` failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
    return done.stdout


class Failed(Exception):
    """A step of a family that did not work: a finding, recorded, and the next family goes on."""


def classify_cli(run_dir: Path, text: str, threads: int, engine: str = "torch") -> tuple[str, float]:
    out = cli(["classify", str(run_dir), text, "--engine", engine, "--precision", "fp32"], threads).strip()
    label, probability = out.splitlines()[-1].split("\t")
    return label, float(probability)


def classify_served(run_dir: Path, texts: list[str], threads: int) -> list[tuple[str, float]]:
    """The labels `bertfit serve` answers for `texts` (one request, 127.0.0.1, bounded waits)."""
    command = [sys.executable, "-m", "bertfit", "serve", str(run_dir), "--host", "127.0.0.1", "--port", "0",
               "--threads", str(threads), "--precision", "fp32"]
    process, port = common.start_server(command, threads, wait=300)
    try:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/classify", method="POST",
                                         data=json.dumps({"texts": texts}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            predictions = json.loads(response.read())["predictions"]
    finally:
        process.terminate()
        process.wait(60)
    return [(p["label"], p["probability"]) for p in predictions]


# ---- learn --------------------------------------------------------------------------------------

def sst2_sentences(args, split: str) -> tuple[list[str], list[int]]:
    from bertfit.tasks import glue_tsv

    examples = glue_tsv.read_glue_split("sst2", args.data_dir, split)
    return list(examples.texts_a), [int(label) for label in examples.labels]


def learn_family(row: FamilyRow, args, work: Path, train_text: Path, sentences: list[str],
                 dev: tuple[list[str], list[int]]) -> dict:
    folder = work / row.name
    result: dict = {"family": row.family, "tokenizer_kind": row.tokenizer, "steps": {}}
    began = time.perf_counter()
    try:
        tokenizer = make_tokenizer(row.tokenizer, train_text, sentences, work / f"{row.name}-tokenizer.json",
                                   args.vocab_size, args.threads)
        model_dir = save_model(row, args, tokenizer, folder / "random-init", "base", args.seed)
        result["vocab_size"] = tokenizer.get_vocab_size()
        result["steps"]["tokenizer and random init"] = "ok"
        run_dir = folder / "run"
        cli(["glue", "sst2", "--model", str(model_dir), "--data-dir", args.data_dir, "--output-dir", str(run_dir),
             "--max-train-samples", str(args.samples), "--epochs", str(args.epochs), "--lr", str(args.lr),
             "--batch-size", str(args.batch_size), "--warmup-ratio", str(args.warmup_ratio),
             "--seed", str(args.seed), "--precision", "fp32", "--quiet"], args.threads)
        scores = json.loads((run_dir / "results.json").read_text())
        result["glue_results"] = {k: scores[k] for k in ("metrics", "train_seconds") if k in scores}
        result["accuracy"] = dev_accuracy(scores)
        result["steps"]["glue sst2"] = "ok"
        texts = dev[0][:args.sentences]
        by_cli = [classify_cli(run_dir, text, args.threads) for text in texts]
        result["classify"] = by_cli
        served = classify_served(run_dir, texts, args.threads)
        result["serve"] = served
        result["steps"]["serve = classify"] = agree(by_cli, served, args.tolerance)
        cli(["export", str(run_dir)], args.threads)
        exported = [classify_cli(run_dir, text, args.threads, engine="onnx") for text in texts]
        result["onnx"] = exported
        result["steps"]["export = classify"] = agree(by_cli, exported, args.tolerance)
    except (Failed, subprocess.TimeoutExpired, OSError, KeyError, ValueError) as exc:
        result["error"] = str(exc)
    result["seconds"] = time.perf_counter() - began
    return result


def dev_accuracy(scores: dict) -> float:
    """The dev accuracy a glue run's results.json reports."""
    try:
        return float(scores["metrics"]["accuracy"])
    except (KeyError, TypeError, ValueError):
        raise Failed(f"results.json holds no metrics.accuracy: {sorted(scores)}") from None


def agree(expected: list[tuple[str, float]], got: list[tuple[str, float]], tolerance: float) -> str:
    """"ok", or what differs: a label, or a probability further than `tolerance` from classify's."""
    problems = [f"sentence {i}: {e} vs {g}" for i, (e, g) in enumerate(zip(expected, got))
                if e[0] != g[0] or abs(e[1] - g[1]) > tolerance]
    if len(expected) != len(got):
        problems.append(f"{len(got)} answers for {len(expected)} sentences")
    return "ok" if not problems else "differs: " + "; ".join(problems)


def learn(args, argv: list[str]) -> None:
    train_texts, _ = sst2_sentences(args, "train")
    dev = sst2_sentences(args, "dev")
    majority = max(np.mean(dev[1]), 1 - np.mean(dev[1]))
    rows = [BY_NAME[name] for name in args.families]
    with tempfile.TemporaryDirectory(prefix="bench-families-") as temporary:
        work = Path(temporary)
        train_text = work / "sst2-train.txt"
        train_text.write_text("".join(text + "\n" for text in train_texts), encoding="utf-8")
        results = {}
        settings = {"size": size_of(args), "samples": args.samples, "epochs": args.epochs, "lr": args.lr,
                    "batch_size": args.batch_size, "warmup_ratio": args.warmup_ratio, "seed": args.seed,
                    "vocab_size": args.vocab_size, "precision": "fp32", "sentences": args.sentences,
                    "tolerance": args.tolerance}
        for row in rows:
            print(f"== {row.name}", file=sys.stderr, flush=True)
            results[row.name] = learn_family(row, args, work, train_text, train_texts, dev)
            print(f"   {summary_line(row.name, results[row.name], majority)}", file=sys.stderr, flush=True)
            # after every family: a run cut short still leaves the families it finished, naming the others
            common.write_figures("families-sst2", __file__, argv, args.figures_dir, settings=settings,
                                 figures={"majority": majority, "dev_sentences": len(dev[1]), "families": results,
                                          "not_run": [r.name for r in rows if r.name not in results],
                                          "quiet_machine": False}, threads=args.threads)
    print(f"SST-2 from random init through the CLI: {args.samples} training rows, {args.epochs} epochs at lr "
          f"{args.lr:g}, batch {args.batch_size}; dev majority class {majority:.4f} ({len(dev[1])} sentences)")
    for name, result in results.items():
        print(summary_line(name, result, majority))
    print(common.cpu_line(common.cpu_kind()))
    failed = [name for name, r in results.items() if not learned(r, majority)]
    print(f"families that learned and answer alike: {len(results) - len(failed)} of {len(results)}"
          + (f"; not: {', '.join(failed)}" if failed else ""))


def learned(result: dict, majority: float) -> bool:
    return ("error" not in result and result.get("accuracy", 0) > majority
            and all(v == "ok" for v in result["steps"].values()))


def summary_line(name: str, result: dict, majority: float) -> str:
    if "error" in result:
        return f"{name}: FAILED after {', '.join(result['steps']) or 'nothing'}: {result['error']}"
    accuracy = result["accuracy"]
    mark = "above" if accuracy > majority else "NOT above"
    checks = "; ".join(f"{step}: {value}" for step, value in result["steps"].items() if step != "glue sst2")
    return f"{name}: dev accuracy {accuracy:.4f} ({mark} the majority class); {checks}"


def size_of(args) -> dict:
    return {"hidden": args.hidden, "layers": args.layers, "heads": args.heads, "intermediate": args.intermediate,
            "max_positions": args.max_positions}


# ---- speed --------------------------------------------------------------------------------------

SPEED_COLUMNS = [("family", "side", ""), ("bertfit train ex/s", "bertfit_train", ".1f"),
                 ("Trainer train ex/s", "peer_train", ".1f"), ("train ratio", "train_ratio", ".2f"),
                 ("bertfit classify sent/s", "bertfit_eval", ".1f"), ("pipeline sent/s", "peer_eval", ".1f"),
                 ("inference ratio", "eval_ratio", ".2f")]


def speed_bertfit(args) -> dict:
    from bertfit import inference
    from bertfit.checkpoints.hf import read_config
    from bertfit.pretrained import load_pretrained
    from bertfit.recipes.glue import loss_fn
    from bertfit.tasks import glue, glue_encoding
    from bertfit.tokenization import special_ids

    folder = Path(args.model_dir)
    train_examples, dev_examples = glue_speed.read_examples(args)
    settings = glue_speed.side_settings(args, len(train_examples))["bertfit"]
    model, tokenizer = load_pretrained(folder, head="classification", num_labels=2)
    pad_id = special_ids(tokenizer).pad
    train, _ = glue_encoding.encode(train_examples, tokenizer, settings["max_seq_length"])
    dev, _ = glue_encoding.encode(dev_examples, tokenizer, settings["max_seq_length"])
    ours = common.bertfit_fit_and_predict(model, train, dev, loss_fn(glue.resolve_task("sst2")), pad_id, settings)
    result = ours["result"]

    # inference as `bertfit classify` does it, tokenizing included, on the model as it was saved
    run = inference.load_run(folder, precision=settings["precision"], need="classify")
    texts = list(dev_examples.texts_a)
    inference.classify(run, texts[:8])  # the first call builds what later ones reuse, as the pipeline's warm-up
    start = time.perf_counter()
    answers = inference.classify(run, texts)
    classify_seconds = time.perf_counter() - start
    train_lengths = common.length_stats(train.lengths)
    config = read_config(folder / "config.json")
    return {"train_set": len(train), "train_examples": result.train_examples_seen, "train_steps": result.steps,
            "train_tokens": train_lengths["tokens"] * settings["epochs"], "train_seconds": ours["train_seconds"],
            "train_flops": common.training_flops(config, **train_lengths) * settings["epochs"],
            "eval_examples": len(texts), "eval_tokens": int(dev.lengths.sum()), "eval_seconds": classify_seconds,
            "labels": [a["label"] for a in answers]}


def speed_peer(args) -> dict:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline, set_seed

    from bertfit.checkpoints.hf import read_config

    folder = str(args.model_dir)
    train_examples, dev_examples = glue_speed.read_examples(args)
    settings = glue_speed.side_settings(args, len(train_examples))["peer"]
    tokenizer = AutoTokenizer.from_pretrained(folder)

    train, dev = glue_speed.peer_datasets(tokenizer, settings["max_seq_length"], train_examples, dev_examples)
    set_seed(args.seed)
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    config = read_config(Path(folder) / "config.json")
    peer = common.peer_fit_and_predict(model, tokenizer, train, dev, settings, sizes=config)
    output = peer["output"]

    classifier = pipeline("text-classification", model=folder, tokenizer=folder, device="cpu",
                          dtype=torch.float32)
    texts = list(dev_examples.texts_a)
    options = dict(batch_size=args.eval_batch_size, truncation=True, max_length=settings["max_seq_length"])
    classifier(texts[:8], **options)
    start = time.perf_counter()
    answers = classifier(texts, **options)
    pipeline_seconds = time.perf_counter() - start
    train_lengths = common.length_stats([len(ids) for ids in train["input_ids"]])
    return {"train_set": len(train), "train_examples": len(train) * settings["epochs"],
            "train_steps": output.global_step, "train_tokens": train_lengths["tokens"] * settings["epochs"],
            "train_seconds": peer["train_seconds"],
            "train_flops": common.training_flops(config, **train_lengths) * settings["epochs"],
            "eval_examples": len(texts), "eval_tokens": sum(len(ids) for ids in dev["input_ids"]),
            "eval_seconds": pipeline_seconds, "labels": [a["label"] for a in answers]}


def speed(args, argv: list[str]) -> None:
    train_texts, _ = sst2_sentences(args, "train")
    settings = glue_speed.side_settings(args, args.samples)
    print(common.cpu_line(common.cpu_kind()))
    print("\n".join(common.settings_lines("same-math", settings, common.ENGINEERING + [
        "inference: bertfit's `inference.classify` against `pipeline('text-classification')`, both tokenizing, "
        f"batches of {args.eval_batch_size} (the pipeline's in the data's order)"])), flush=True)
    rows, runs = {}, {}
    child_argv = common._without_options(argv, ("--json", "--figures-dir", "--families", "--models-dir"))
    with tempfile.TemporaryDirectory(prefix="bench-families-speed-") as temporary:
        work = Path(temporary)
        train_text = work / "sst2-train.txt"
        train_text.write_text("".join(text + "\n" for text in train_texts), encoding="utf-8")
        for name in args.families:
            folder = speed_model(BY_NAME[name], args, Path(args.models_dir) if args.models_dir else work, work,
                                 train_text, train_texts)
            sides = {side: common.run_side(__file__, [*child_argv, "--model-dir", str(folder)], side)
                     for side in ("bertfit", "peer")}
            runs[name] = sides
            b, p = sides["bertfit"], sides["peer"]
            agreement = float(np.mean([x == y for x, y in zip(b.pop("labels"), p.pop("labels"))]))
            rows[name] = {"bertfit_train": b["train_examples"] / b["train_seconds"],
                          "peer_train": p["train_examples"] / p["train_seconds"],
                          "bertfit_eval": b["eval_examples"] / b["eval_seconds"],
                          "peer_eval": p["eval_examples"] / p["eval_seconds"],
                          "steps": (b["train_steps"], p["train_steps"]), "inference_label_agreement": agreement,
                          # the same tokens on both sides: the tokenizer files read alike
                          "train_tokens": (b["train_tokens"], p["train_tokens"]),
                          "eval_tokens": (b["eval_tokens"], p["eval_tokens"])}
            rows[name]["train_ratio"] = rows[name]["bertfit_train"] / rows[name]["peer_train"]
            rows[name]["eval_ratio"] = rows[name]["bertfit_eval"] / rows[name]["peer_eval"]
            print(f"   {name}: train {rows[name]['train_ratio']:.2f}, inference {rows[name]['eval_ratio']:.2f}",
                  file=sys.stderr, flush=True)
            # after every family: a run cut short still leaves the families it measured, naming the others
            write_speed(args, argv, settings, rows, runs, [n for n in args.families if n not in rows])
    common.print_table(f"SST-2, every family at one size ({args.hidden} wide, {args.layers} layers, {args.heads} "
                       f"heads), same math, fp32", rows, SPEED_COLUMNS)
    first = next(iter(runs.values()))
    print(f"training: the first {first['bertfit']['train_set']} SST-2 rows, {args.epochs} epoch(s), "
          f"{first['bertfit']['train_steps']} / {first['peer']['train_steps']} steps (bertfit / Trainer); inference: "
          f"{first['bertfit']['eval_examples']} dev sentences; {args.threads} threads on each side")
    print("the labels of the untrained classifier that inference asks (the saved random weights): "
          + ", ".join(f"{n} {r['inference_label_agreement']:.3f}" for n, r in rows.items()) + " equal")
    print("real tokens, bertfit / transformers: " + ", ".join(
        f"{n} train {r['train_tokens'][0]} / {r['train_tokens'][1]}, dev {r['eval_tokens'][0]} / {r['eval_tokens'][1]}"
        for n, r in rows.items()))
    print(common.cpu_line(common.cpu_kind()))
    train_ratio, eval_ratio = write_speed(args, argv, settings, rows, runs, [])
    slower = [f"{n} ({'train' if r['train_ratio'] < 1 else 'inference'})" for n, r in rows.items()
              if r["train_ratio"] < 1 or r["eval_ratio"] < 1]
    print(f"slower than transformers: {', '.join(slower) if slower else 'no family'}")
    print(f"ratio train {train_ratio:.2f} eval {eval_ratio:.2f}")


def write_speed(args, argv: list[str], settings: dict, rows: dict, runs: dict, not_run: list[str]) -> tuple:
    """The figures file of the families measured so far; (train, inference) ratios: the smallest over them."""
    train_ratio = min(r["train_ratio"] for r in rows.values())
    eval_ratio = min(r["eval_ratio"] for r in rows.values())
    common.write_figures("families-speed", __file__, argv, args.figures_dir, settings=settings,
                         precision={"bertfit": "fp32", "peer": "fp32"}, threads=args.threads,
                         figures={"size": size_of(args), "families": rows, "runs": runs, "not_run": not_run,
                                  "ratio": {"train": train_ratio, "eval": eval_ratio}, "quiet_machine": True})
    return train_ratio, eval_ratio


def speed_model(row: FamilyRow, args, models: Path, work: Path, train_text: Path, train_texts: list[str]) -> Path:
    """The family's classification model for the speed sides, in `models`: made there, or the one an earlier run
    (the `models` mode) made with the same size, vocabulary and seed."""
    folder = models / row.name
    made = {"size": size_of(args), "vocab_size": args.vocab_size, "seed": args.seed}
    if (folder / "bench.json").exists():
        if json.loads((folder / "bench.json").read_text()) != made:
            sys.exit(f"{folder}: made with other settings than {made}; give another --models-dir")
        return folder
    tokenizer = make_tokenizer(row.tokenizer, train_text, train_texts, work / f"{row.name}-tokenizer.json",
                               args.vocab_size, args.threads)
    save_model(row, args, tokenizer, folder, "classification", args.seed, **attention_dropout_zero(row))
    (folder / "bench.json").write_text(json.dumps(made))
    return folder


def make_models(args) -> None:
    """The speed models of every family in --models-dir, untimed, so that a timed run only times."""
    train_texts, _ = sst2_sentences(args, "train")
    with tempfile.TemporaryDirectory(prefix="bench-families-models-") as temporary:
        work = Path(temporary)
        train_text = work / "sst2-train.txt"
        train_text.write_text("".join(text + "\n" for text in train_texts), encoding="utf-8")
        for name in args.families:
            print(f"{speed_model(BY_NAME[name], args, Path(args.models_dir), work, train_text, train_texts)}")


def attention_dropout_zero(row: FamilyRow) -> dict:
    """The config.json field of the family's attention dropout, at 0: the same-math setting the Trainer reads."""
    return {"attention_dropout": 0.0} if row.family in ("distilbert", "modernbert") \
        else {"attention_probs_dropout_prob": 0.0}


# ---- the command --------------------------------------------------------------------------------

def main(argv: list[str]) -> None:
    parser = common.parser(__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("learn", "speed", "models"),
                        help="learn: through the CLI (untimed); speed: timed; models: make the speed models in "
                             "--models-dir (untimed), for a speed run to take")
    parser.add_argument("--models-dir", help="speed, models: keep each family's speed model here, and take it from "
                                             "here when an earlier run made it with the same settings")
    parser.add_argument("--data-dir", required=True, help="the GLUE root, or its SST-2 folder")
    parser.add_argument("--families", type=lambda text: [n.strip() for n in text.split(",") if n.strip()],
                        default=[row.name for row in FAMILIES],
                        help=f"comma-separated, of {', '.join(BY_NAME)} (default: all)")
    parser.add_argument("--samples", type=int, default=2000, help="train on the first N SST-2 rows (default 2000)")
    parser.add_argument("--eval-samples", type=int, default=0, help="speed: classify the first M dev sentences "
                                                                    "(0: all 872)")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--intermediate", type=int, default=1024)
    parser.add_argument("--max-positions", type=int, default=512, help="positions of every model (default 512)")
    parser.add_argument("--vocab-size", type=int, default=8000, help="each tokenizer's vocabulary (default 8000)")
    parser.add_argument("--epochs", type=int, help="learn: default 5; speed: default 1")
    parser.add_argument("--lr", type=float, help="learn: default 5e-4 (random init); speed: default 5e-5")
    parser.add_argument("--batch-size", type=int, default=32, help="both (default 32)")
    parser.add_argument("--warmup-ratio", type=float, default=0.1, help="learn (default 0.1)")
    parser.add_argument("--eval-batch-size", type=int, default=128, help="speed: both sides' (default 128)")
    parser.add_argument("--max-seq-length", type=int, default=128, help="speed: both sides' (default 128)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--sentences", type=int, default=3, help="learn: dev sentences asked of classify, serve "
                                                                 "and the export (default 3)")
    parser.add_argument("--tolerance", type=float, default=2e-4, help="learn: largest probability difference "
                                                                      "(classify prints 4 decimals; default 2e-4)")
    parser.add_argument("--model-dir", help=__import__("argparse").SUPPRESS)  # a speed side's model
    args = parser.parse_args(argv)
    unknown = [n for n in args.families if n not in BY_NAME]
    if unknown:
        parser.error(f"unknown families {', '.join(unknown)}; known: {', '.join(BY_NAME)}")
    learning = args.mode == "learn"
    args.epochs = args.epochs or (5 if learning else 1)
    args.lr = args.lr or (5e-4 if learning else 5e-5)
    # glue_speed's same-math settings, read from these names
    args.compare, args.attention_dropout, args.precision = "same-math", None, "fp32"
    if args.side:
        import torch

        torch.set_num_threads(args.threads)
        import torch._dynamo  # noqa: F401  (both sides import it before their clocks start, as in common.run)

        figures = {"bertfit": speed_bertfit, "peer": speed_peer}[args.side](args)
        figures["threads"] = torch.get_num_threads()
        Path(args.result_file).write_text(json.dumps(figures))
        return
    if learning:
        learn(args, argv)
    elif args.mode == "models":
        if not args.models_dir:
            parser.error("models needs --models-dir")
        make_models(args)
    else:
        speed(args, argv)


if __name__ == "__main__":
    main(sys.argv[1:])
