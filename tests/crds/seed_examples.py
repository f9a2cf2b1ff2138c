"""Extract the example YAML of the seed documents, verbatim, into examples/seeds/.

The seeds put each example in a fenced code block. Some blocks (tagged `shell`) end with a stray
`EOF` line: the terminator of a `cat <<EOF | kubectl apply -f -` heredoc whose opening line the
document lost. That line is shell, not YAML, so it is dropped; nothing else is touched. Blocks
repeated word for word (seed 003 lists its two examples twice) are written once.

    python -m tests.crds.seed_examples /work/shared/seeds   # rewrite examples/seeds/
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXAMPLES_DIR = REPO / "examples" / "seeds"
SEED_FILES = {"000": "BalancingPolicy user guide", "003": "LocalRedirectPolicy user guide"}

_FENCE = re.compile(r"^```[A-Za-z]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
_KIND = re.compile(r"^kind:\s*(\S+)", re.MULTILINE)
_NAME = re.compile(r"^metadata:\n(?:\s+.*\n)*?\s+name:\s*(\S+)", re.MULTILINE)


@dataclass(frozen=True)
class SeedExample:
    seed: str
    kind: str
    name: str
    text: str

    @property
    def filename(self) -> str:
        return f"{self.seed}-{self.kind.lower()}-{self.name}.yaml"


def extract(seed: str, markdown: str) -> list[SeedExample]:
    examples: list[SeedExample] = []
    for block in _FENCE.findall(markdown):
        if "apiVersion: balancing.elf.io/" not in block:
            continue
        lines = block.splitlines(keepends=True)
        if lines and lines[-1].strip() == "EOF":
            lines = lines[:-1]
        text = "".join(lines)
        kind, name = _KIND.search(text), _NAME.search(text)
        assert kind and name, f"seed {seed}: example without kind or metadata.name:\n{text}"
        example = SeedExample(seed, kind.group(1), name.group(1), text)
        if example not in examples:
            examples.append(example)
    return examples


def extract_dir(seeds_dir: Path) -> list[SeedExample]:
    examples: list[SeedExample] = []
    for prefix in SEED_FILES:
        (path,) = seeds_dir.glob(f"{prefix}_*")
        examples.extend(extract(prefix, path.read_text()))
    return examples


def main(argv: list[str]) -> int:
    seeds_dir = Path(argv[0]) if argv else Path("/work/shared/seeds")
    EXAMPLES_DIR.mkdir(parents=True, exist_ok=True)
    for example in extract_dir(seeds_dir):
        (EXAMPLES_DIR / example.filename).write_text(example.text)
        print(f"wrote examples/seeds/{example.filename}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
