#!/usr/bin/env python3
"""Write README.md from nbs/index.ipynb (nbdev's `nbdev_readme` needs quarto, which we cannot install).

Markdown cells are copied as they are; code cells are shown as Python blocks unless hidden
(`#| hide`, `#| exporti`, `#| eval: false` cells that are also `#| hide`). Run with `--check` to fail when
README.md is out of date.
"""
import json, sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent
nb = json.loads((root/'nbs'/'index.ipynb').read_text(encoding='utf-8'))
parts = []
for c in nb['cells']:
    src = ''.join(c['source']).strip('\n')
    if not src: continue
    if c['cell_type'] == 'markdown': parts.append(src)
    elif c['cell_type'] == 'code':
        lines = src.splitlines()
        if any(l.strip().replace(' ', '') in ('#|hide', '#|exporti', '#|export') for l in lines): continue
        parts.append('```python\n' + '\n'.join(l for l in lines if not l.startswith('#|')) + '\n```')
text = '<!-- generated from nbs/index.ipynb by .ci/readme.py: edit the notebook, not this file -->\n\n' + '\n\n'.join(parts) + '\n'
dest = root/'README.md'
if '--check' in sys.argv:
    if not dest.exists() or dest.read_text(encoding='utf-8') != text:
        sys.exit('README.md is out of date: run `python .ci/readme.py`')
else: dest.write_text(text, encoding='utf-8')
