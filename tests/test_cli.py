"""The command line as a new user meets it: help that teaches, and a plain message for each ordinary mistake."""
import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import tiny

from bertfit import cli
from bertfit.pretrained import save_pretrained
from bertfit.cli import main
from bertfit.model import BertConfig, BertForQuestionAnswering, BertForSequenceClassification

SRC = str(Path(__file__).resolve().parents[1] / "src")


def run_python(code: str, **env) -> subprocess.CompletedProcess:
    """`code` in a fresh interpreter with this checkout's bertfit: what a user's process starts from."""
    import os

    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": SRC, **env})


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def error_of(argv, capsys) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return captured.err


# ---- help -----------------------------------------------------------------------------------------

def test_every_option_and_argument_of_every_command_has_a_text():
    parser = cli.build_parser()
    for name, command in {"bertfit": parser, **subcommands(parser)}.items():
        for action in command._actions:
            if not isinstance(action, argparse._SubParsersAction):
                assert action.help and action.help.strip(), f"{name} {action.option_strings or action.dest}"


def test_help_shows_the_defaults_and_glue_help_the_table_of_defaults_by_task_and_size():
    commands = subcommands(cli.build_parser())
    squad, glue = commands["squad"].format_help(), commands["glue"].format_help()

    flat = " ".join(squad.split())
    assert "(default: 0.0001)" in flat  # SQuAD's own lr, not the general one
    assert "(default: 384)" in flat and "(0: at the end of each epoch) (default: 0)" in flat
    assert "BERT's original fine-tuning used 0.1) (default: 0.0)" in flat
    assert "--skip-nonfinite skip steps with a non-finite loss, counted, instead of stopping --attention" in flat
    flat = " ".join(glue.split())
    assert "--lr LR peak learning rate" in flat and "(default: by task and training-set size, see below)" in flat
    assert "(default: 0.1)" in flat  # warmup: no table row, the general default
    assert "any ≥ 20,000 3 2e-05 32" in flat and "any ≥ 0 5 5e-05 32" in flat


def test_the_defaults_help_shows_for_glue_and_squad_options_are_the_dataclasses_own():
    """GlueOptions and SquadOptions hold these defaults; the help, written without torch, must say the same."""
    import re
    from dataclasses import fields

    from bertfit.recipes.glue import GlueOptions
    from bertfit.recipes.ner import NerOptions
    from bertfit.recipes.squad import SquadOptions

    commands = subcommands(cli.build_parser())
    checked = 0
    for command, options in (("glue", GlueOptions), ("squad", SquadOptions), ("ner", NerOptions)):
        defaults = {f.name: f.default for f in fields(options)}
        for action in commands[command]._actions:
            shown = re.search(r"\(default: ([^)]*)\)$", action.help or "")
            if action.dest in defaults and shown and defaults[action.dest] is not None:
                assert shown.group(1) == str(defaults[action.dest]), f"{command} {action.option_strings}"
                assert action.default is None  # not given: the dataclass's default applies
                checked += 1
    # glue: max-seq-length, long-texts, stride; squad: version and five window settings; ner: max-seq-length,
    # stride, tag-scheme, bad-tags, pos-column
    assert checked == 14


def test_qa_help_and_usage_say_one_of_context_and_context_file_is_required(capsys):
    assert "(--context TEXT | --context-file FILE)" in " ".join(subcommands(cli.build_parser())["qa"].format_usage().split())
    with pytest.raises(SystemExit) as exit:
        main(["qa", "run", "--question", "Who?"])
    assert exit.value.code == 2
    assert "one of the arguments --context --context-file is required" in capsys.readouterr().err


def test_version_prints_the_package_version(capsys):
    from bertfit import __version__

    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0 and capsys.readouterr().out == f"bertfit {__version__}\n"


def test_help_and_version_do_not_import_torch():
    result = run_python(
        "import contextlib, io, sys\n"
        "from bertfit.cli import build_parser, main\n"
        "for argv in (['--help'], ['glue', '--help'], ['squad', '--help'], ['qa', '--help'], ['tokenizer', '--help'],\n"
        "             ['fill-mask', '--help'], ['pretrain', '--help'],\n"
        "             ['--version']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "        main(argv)\n"
        "print(sorted(m for m in ('torch', 'numpy', 'datasets', 'transformers', 'tokenizers') if m in sys.modules))\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# ---- ordinary mistakes: a message, no traceback, nothing left behind ------------------------------

def test_a_negative_lr_is_refused_before_any_data_is_read_or_run_dir_made(tmp_path, capsys):
    run_dir = tmp_path / "runs" / "rte"
    for argv in (["glue", "rte"], ["glue", "all"]):
        # the data folder does not even exist: the settings are checked first
        err = error_of([*argv, "--data-dir", str(tmp_path / "nowhere"), "--output-dir", str(run_dir), "--lr", "-1"],
                       capsys)
        assert "--lr must be positive, not -1" in err
        assert not run_dir.exists() and not (tmp_path / "runs").exists()
    assert "--max-steps must be zero (off) or positive" in error_of(["squad", "--max-steps", "-2"], capsys)


@pytest.fixture(scope="module")
def squad_run(tmp_path_factory, tokenizer) -> Path:
    """A run dir as `bertfit squad` leaves it (the tiny span model, untrained)."""
    torch.manual_seed(0)
    model = BertForQuestionAnswering(BertConfig(vocab_size=tokenizer.get_vocab_size(), **tiny.REAL_VOCAB_SIZES))
    run_dir = tmp_path_factory.mktemp("squad") / "run"
    save_pretrained(model, tokenizer, run_dir / "model", extra={"task": "squad-v1.1", "version": "1.1",
                                                                     "max_seq_length": 128, "doc_stride": 32})
    return run_dir


@pytest.fixture(scope="module")
def glue_run(tmp_path_factory, tokenizer) -> Path:
    """A run dir as `bertfit glue sst2` leaves it (the tiny classifier, untrained)."""
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=tokenizer.get_vocab_size(), **tiny.REAL_VOCAB_SIZES))
    run_dir = tmp_path_factory.mktemp("glue") / "run"
    save_pretrained(model, tokenizer, run_dir / "model", labels=["negative", "positive"], extra={"task": "sst2"})
    return run_dir


def test_qa_with_a_missing_context_file_names_it(squad_run, tmp_path, capsys):
    missing = tmp_path / "missing.txt"
    err = error_of(["qa", str(squad_run), "--question", "Who?", "--context-file", str(missing)], capsys)
    assert f"{missing}: no such file (--context-file)" in err
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    err = error_of(["qa", str(squad_run), "--question", "Who?", "--context-file", str(tmp_path / "latin1.txt")], capsys)
    assert "not UTF-8 text" in err


def test_qa_with_no_such_run_says_there_is_no_model_there(tmp_path, capsys):
    err = error_of(["qa", str(tmp_path / "no-such-run"), "--question", "Who?", "--context", "Ann won."], capsys)
    assert "no-such-run: no fine-tuned model here" in err


@pytest.mark.parametrize("question", ["", "   \n"])
def test_qa_refuses_an_empty_or_blank_question(squad_run, capsys, question):
    err = error_of(["qa", str(squad_run), "--question", question, "--context", "Ann won the race."], capsys)
    assert "the question is empty" in err


def test_qa_answers_from_a_squad_run(squad_run, capsys):
    assert main(["qa", str(squad_run), "--question", "Who won?", "--context", "Ann won the race."]) == 0
    assert "characters" in capsys.readouterr().out


def test_qa_on_a_glue_run_says_it_is_not_a_squad_run(glue_run, capsys):
    err = error_of(["qa", str(glue_run), "--question", "Who won?", "--context", "Ann won."], capsys)
    assert "a GLUE sst2 run, not a SQuAD run" in err and "bertfit classify" in err


def test_classify_on_a_squad_run_says_it_is_not_a_classification_run(squad_run, capsys):
    err = error_of(["classify", str(squad_run), "a fine film"], capsys)
    assert "a SQuAD run (squad-v1.1), not a classification run" in err and "bertfit qa" in err


def test_tokenizer_with_a_file_that_is_not_utf8_says_which_line_and_writes_nothing(tmp_path, capsys):
    (tmp_path / "corpus.txt").write_bytes("fine\n\ncafé\n".encode("latin-1"))
    output = tmp_path / "out" / "tokenizer.json"
    err = error_of(["tokenizer", "--train-file", str(tmp_path / "corpus.txt"), "--output", str(output),
                    "--vocab-size", "50", "--quiet"], capsys)
    assert err == f"bertfit: error: {tmp_path / 'corpus.txt'}, line 3: not UTF-8 text (byte 3 of the line); " \
                  f"give a UTF-8 text file\n"
    assert not output.exists() and not list(tmp_path.glob("out/*"))
    err = error_of(["tokenizer", "--train-file", str(tmp_path / "missing.txt"), "--output", str(output)], capsys)
    assert err == f"bertfit: error: {tmp_path / 'missing.txt'}: no such file\n"


def test_tokenizer_trains_and_says_what_it_read_and_wrote(tmp_path, capsys):
    from bertfit.pretrained import load_tokenizer

    text = "\n\n".join(f"paragraph {i} about the river and the city\nand a second line {i}" for i in range(20))
    (tmp_path / "corpus.txt").write_text(text + "\n", encoding="utf-8")
    output = tmp_path / "tokenizer.json"
    assert main(["tokenizer", "--train-file", str(tmp_path / "corpus.txt"), "--output", str(output),
                 "--vocab-size", "60", "--min-frequency", "1", "--lowercase", "--quiet"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("read 20 documents, 40 paragraphs, 260 words")
    assert out[1].startswith("vocabulary 60 tokens (asked 60) in ") and out[2] == f"wrote {output}"
    assert load_tokenizer(output).token_to_id("[PAD]") == 0


def test_ctrl_c_outside_training_promises_no_resume(monkeypatch, capsys):
    def interrupt(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_predict", interrupt)
    assert main(["predict", "run"]) == 130
    assert capsys.readouterr().err == "bertfit: interrupted\n"
