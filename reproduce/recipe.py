"""Remake a shipped optimizer end to end: run the commands of reproduce/README.md in order.

    python reproduce/recipe.py small-v11          # about 3 hours on 2 CPU cores
    python reproduce/recipe.py rnn-mlp-v6         # small-v11 first, then about 40 minutes
    python reproduce/recipe.py self-trained-v1    # about 5 minutes
    python reproduce/recipe.py small-v11 --dry-run

Run it from the repository root. Re-running resumes: a ``lopt meta-train`` or ``lopt self-train``
picks its run up where it stopped, and a step whose output (``--out``) already exists is skipped.
"""

from __future__ import annotations

import argparse
import pathlib
import re
import shlex
import subprocess
import sys

README = pathlib.Path(__file__).resolve().parent / "README.md"
SECTIONS = {
    "small-v11": "`small` v11",
    "rnn-mlp-v6": "`rnn-mlp` v6",
    "self-trained-v1": "`self-trained` v1",
}
NEEDS = {"rnn-mlp-v6": "small-v11"}  # the recipe that must run first


def commands(target: str, markdown: str | None = None) -> list[list[str]]:
    """The ``lopt`` commands that make ``target`` (its prerequisites' first), as argument lists."""
    markdown = README.read_text() if markdown is None else markdown
    before = commands(NEEDS[target], markdown) if target in NEEDS else []
    section = markdown.split(f"## {SECTIONS[target]}", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    lines = [line for line in block.splitlines() if line.startswith("lopt ")]
    return before + [shlex.split(line, comments=True) for line in lines]


def done(argv: list[str]) -> bool:
    """Whether a step that is not a training run (which resumes) has already written its
    output."""
    if argv[1] in ("meta-train", "self-train") or "--out" not in argv:
        return False
    out = pathlib.Path(argv[argv.index("--out") + 1])
    return (out.parent / f"{out.name}.safetensors").exists()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", choices=sorted(SECTIONS))
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = parser.parse_args(argv)
    for step in commands(args.target):
        if done(step):
            print(f"done already: {shlex.join(step)}")
            continue
        print(shlex.join(step), flush=True)
        if not args.dry_run:
            subprocess.run(step, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
