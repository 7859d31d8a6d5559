#!/usr/bin/env python3
"""Print the README's set-up commands, one per line: the first ```sh block under '## Set up' (install and
main job) and the second (tests). `.ci/run` runs exactly these, so CI does what the README tells a user."""
import re, sys
from pathlib import Path
text = (Path(__file__).resolve().parent.parent/'README.md').read_text(encoding='utf-8')
sec = text.split('## Set up', 1)[1].split('\n## ', 1)[0]
blocks = re.findall(r'```sh\n(.*?)```', sec, flags=re.S)
if len(blocks) < 2: sys.exit("README.md: expected two ```sh blocks under '## Set up'")
for b in blocks[:2]: print(' '.join(l.strip() for l in b.strip().splitlines()))
