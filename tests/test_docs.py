"""The documentation's command lines must run: every `key=value` they show is a real key.

Every fenced code block of README.md and docs/**/*.md is searched for command lines of the
project (`python -m train`, `make train ARGS="..."`, `deepfake-<name>`, `python -m
deepfake_detection.<name>`). Each is composed with the Hydra config of its command, with
its overrides, so a renamed key, group or option fails here naming the file and line. The
values shown are then checked against the command's rules, as the command would check them;
only a path's existence is not (placeholders such as `<run>` or `path/to/x` stand for paths).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser

from deepfake_detection.commands import COMMANDS as TABLE
from deepfake_detection.comparison.compare import parse_args as compare_args
from deepfake_detection.config import check_group_choices, config_dir, register_resolvers
from deepfake_detection.rules import config_problems

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 300

# Each command and the entry config it composes (`compare` has plain arguments instead).
COMMANDS = {
    name: name
    for name in ("train", "evaluate", "predict", "robustness", "export", "serve", "audit")
} | {"compare": None}

# Hydra's own flags, with the number of values each takes; they are not overrides.
HYDRA_FLAGS = {
    "-m": 0,
    "--multirun": 0,
    "--info": 0,
    "-i": 0,
    "--resolve": 0,
    "--cfg": 1,
    "-c": 1,
    "--package": 1,
    "-p": 1,
    "--config-name": 1,
    "-cn": 1,
    "--config-dir": 1,
    "-cd": 1,
}
SHELL_OPERATORS = {"|", "||", "&&", ";", ">", ">>", "2>&1", "&"}
PLACEHOLDER = re.compile(r"<[^<>\n]*>")  # <run>, <run dir>, <date>_<time>, <image or folder>
TABLE_CODE = re.compile(r"`([^`]+)`")
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


@dataclass(frozen=True)
class DocCommand:
    """One command line shown in the docs: where, which command, and its arguments."""

    source: str  # "docs/training.md:42"
    command: str  # a key of COMMANDS
    args: tuple[str, ...]
    multirun: bool


def code_lines(text: str) -> list[tuple[int, str]]:
    """The lines inside fenced code blocks, numbered from 1, continuations (`\\`) joined,
    and the code spans of table rows (such as the README's table of commands)."""
    lines: list[tuple[int, str]] = []
    fence: str | None = None
    pending: tuple[int, str] | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if fence is None:
            if stripped.startswith(("```", "~~~")):
                fence = stripped[:3]
            elif stripped.startswith("|"):
                # commands with arguments; a bare `deepfake-compare` only names one
                spans = TABLE_CODE.findall(stripped)
                lines += [(number, s) for s in spans if (parse_command(s) or ("", []))[1]]
            continue
        if stripped.startswith(fence):
            fence = None
            if pending:
                lines.append(pending)
                pending = None
            continue
        start, before = pending or (number, "")
        if stripped.endswith("\\"):
            pending = (start, f"{before} {stripped[:-1]}")
        else:
            pending = None
            lines.append((start, f"{before} {stripped}".strip()))
    return lines


def parse_command(line: str) -> tuple[str, list[str]] | None:
    """`(command, arguments)` when `line` runs one of the project's commands, else None."""
    line = PLACEHOLDER.sub("X", line.removeprefix("$ "))
    try:
        words = shlex.split(line, comments=True)
    except ValueError:  # unbalanced quotes: not a shell command line
        return None
    while words and ENV_ASSIGNMENT.match(words[0]):
        words.pop(0)  # VAR=value before the command
    if words[:2] == ["make", "train"]:
        args = [w.removeprefix("ARGS=") for w in words[2:] if w.startswith("ARGS=")]
        return "train", [word for arg in args for word in shlex.split(arg)]
    if len(words) >= 3 and words[0].startswith("python") and words[1] == "-m":
        module, args = words[2], words[3:]
        name = "train" if module == "train" else module.removeprefix("deepfake_detection.")
        if module not in ("train", f"deepfake_detection.{name}"):
            return None
    elif words and words[0].startswith("deepfake-"):
        name, args = words[0].removeprefix("deepfake-"), words[1:]
    else:
        return None
    if name not in COMMANDS:
        return None
    for i, word in enumerate(args):
        if word in SHELL_OPERATORS:
            args = args[:i]
            break
    return name, args


def find_commands(path: Path, root: Path = ROOT) -> list[DocCommand]:
    found = []
    for number, line in code_lines(path.read_text(encoding="utf-8")):
        parsed = parse_command(line)
        if parsed is None:
            continue
        command, args = parsed
        multirun = "-m" in args or "--multirun" in args
        source = f"{path.relative_to(root).as_posix()}:{number}"
        found.append(DocCommand(source, command, tuple(args), multirun))
    return found


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def overrides_of(args: tuple[str, ...]) -> list[str]:
    """The Hydra overrides among `args`: flags, `...` and `hydra.`/`hydra/` keys left out."""
    overrides, skip = [], 0
    for word in args:
        if skip:
            skip -= 1
        elif word in HYDRA_FLAGS:
            skip = HYDRA_FLAGS[word]
        elif word.startswith("-"):
            raise AssertionError(f"{word}: not a flag of Hydra's command line")
        elif word == "..." or word.lstrip("+~").startswith(("hydra.", "hydra/")):
            continue
        else:
            overrides.append(word)
    return overrides


def compositions(overrides: list[str], multirun: bool) -> list[list[str]]:
    """The override lists to compose: a sweep (`a=1,2`) once per value, the others first."""
    if not multirun:
        return [overrides]
    parsed = OverridesParser.create().parse_overrides(overrides)
    sweeps = {
        i: list(o.sweep_string_iterator()) for i, o in enumerate(parsed) if o.is_sweep_override()
    }
    if not sweeps:
        return [overrides]
    base = [
        f"{o.get_key_element()}={sweeps[i][0]}" if i in sweeps else overrides[i]
        for i, o in enumerate(parsed)
    ]
    runs = []
    for i, values in sweeps.items():
        key = parsed[i].get_key_element()
        runs += [[*base[:i], f"{key}={value}", *base[i + 1 :]] for value in values]
    return runs


#: What a rule says of a path that does not exist here: placeholders in the docs.
PATH_PROBLEMS = ("no such", "not a directory", "not a file", "not a training run")


def check_values(command: str, cfg, overrides: list[str]) -> None:
    """The values `overrides` set must pass the command's rules (but for paths that do not
    exist here); the keys the doc line leaves alone are the config's defaults."""
    given = {o.split("=", 1)[0].lstrip("+~") for o in overrides if "=" in o}
    rules = TABLE[command].rules
    problems = [
        problem.message
        for problem in config_problems(cfg, rules(cfg) if callable(rules) else rules)
        if problem.key in given and not any(text in problem.message for text in PATH_PROBLEMS)
    ]
    assert problems == [], problems


def check(doc: DocCommand) -> None:
    """Compose `doc` as its command would; raises on an unknown key, group or option, or a
    value its rules refuse."""
    config = COMMANDS[doc.command]
    if config is None:  # compare: argparse, no Hydra config
        try:
            compare_args(list(doc.args))
        except SystemExit as err:
            raise AssertionError(f"deepfake-compare rejects {' '.join(doc.args)}") from err
        return
    register_resolvers()
    for overrides in compositions(overrides_of(doc.args), doc.multirun):
        check_group_choices(overrides)
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = compose(config, overrides=[*overrides, "paths.output_dir=."])
        check_values(doc.command, cfg, overrides)


DOC_COMMANDS = [doc for path in doc_files() for doc in find_commands(path)]


def test_docs_show_commands():
    """The search finds the commands (a broken parser would pass every check vacuously)."""
    assert len(DOC_COMMANDS) >= 40
    assert {doc.command for doc in DOC_COMMANDS} == set(COMMANDS)


@pytest.mark.parametrize("doc", DOC_COMMANDS, ids=lambda doc: doc.source)
def test_doc_command_overrides_exist(doc: DocCommand):
    check(doc)


def test_readme_is_a_front_page():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines"


SNIPPET = """\
Some prose with `python -m train model.no_such_key=1` inline, which is not checked.

```bash
python -m train data.root=path/to/<dataset> \\
  model=mobilenet_v2 freeze=last_n 'freeze.n=3'   # a comment
make train ARGS="trainer.max_epochs=2 seed=1"
deepfake-evaluate ckpt_path=outputs/train/<run dir> threshold=val
python -m deepfake_detection.audit data.root=x audit.fail_on=near
python -m train -m model=custom_cnn,mobilenet_v2 hydra/launcher=submitit_slurm
pip install -e ".[docs]"
python -m train model.no_such_key=1
python -m train model=resnet
```
"""


def test_checker_catches_bad_overrides(tmp_path: Path):
    page = tmp_path / "docs" / "page.md"
    page.parent.mkdir()
    page.write_text(SNIPPET)
    docs = find_commands(page, root=tmp_path)
    assert [(d.source, d.command, d.args) for d in docs] == [
        (
            "docs/page.md:4",
            "train",
            ("data.root=path/to/X", "model=mobilenet_v2", "freeze=last_n", "freeze.n=3"),
        ),
        ("docs/page.md:6", "train", ("trainer.max_epochs=2", "seed=1")),
        ("docs/page.md:7", "evaluate", ("ckpt_path=outputs/train/X", "threshold=val")),
        ("docs/page.md:8", "audit", ("data.root=x", "audit.fail_on=near")),
        (
            "docs/page.md:9",
            "train",
            ("-m", "model=custom_cnn,mobilenet_v2", "hydra/launcher=submitit_slurm"),
        ),
        ("docs/page.md:11", "train", ("model.no_such_key=1",)),
        ("docs/page.md:12", "train", ("model=resnet",)),
    ]
    good, bad_key, bad_option = docs[:5], docs[5], docs[6]
    for doc in good:
        check(doc)
    with pytest.raises(Exception, match="no_such_key"):
        check(bad_key)
    with pytest.raises(Exception, match="unknown model option"):
        check(bad_option)


def test_checker_catches_bad_values(tmp_path: Path):
    page = tmp_path / "docs" / "page.md"
    page.parent.mkdir()
    page.write_text(
        "```bash\n"
        "deepfake-evaluate ckpt_path=outputs/train/<run> threshold=2\n"
        "python -m train data.root=path/to/data trainer.max_epochs=0\n"
        "deepfake-evaluate ckpt_path=outputs/train/<run> data.root=path/to/other\n"
        "```\n"
    )
    threshold, epochs, placeholder = find_commands(page, root=tmp_path)
    with pytest.raises(AssertionError, match="threshold=2: must be a number in"):
        check(threshold)
    with pytest.raises(AssertionError, match="trainer.max_epochs=0"):
        check(epochs)
    check(placeholder)  # a path that does not exist here stands for the reader's
