#!/usr/bin/env python3
"""The library's source notebooks (those with `#| default_exp`) are its modules and their tests: they never set up a
Colab runtime, install packages, mount a drive, or hold cells that only run with a GPU or at real sizes (`#| slow`,
`#| cuda`); that is what the walkthroughs in nbs/tutorials/ are for. Every walkthrough has exactly one cell tagged
`parameters` (papermill's convention) and an "Open in Colab" badge; the docs sidebar (written by hand, walkthroughs first)
lists every notebook. Exits 1 and names each offending cell."""
import json, re, sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent
# a set-up call on a real location, a Drive mount, or a pip install (a test may call notebook_setup on a scratch folder)
SETUP = re.compile(r"""(notebook_setup|colab_setup)\(\s*(data\s*=\s*)?['"]|drive\.mount\(\s*['"]|'-m',\s*'pip',\s*'install'|^\s*[!%]pip\s""", re.M)
errs, n_src, n_wt = [], 0, 0
for fn in sorted((root/'nbs').rglob('*.ipynb')):
    if '.ipynb_checkpoints' in fn.parts: continue
    cells = json.loads(fn.read_text(encoding='utf-8'))['cells']
    src = lambda c: ''.join(c['source'])
    rel = fn.relative_to(root)
    if any(src(c).startswith('#| default_exp') for c in cells):
        n_src += 1
        for i, c in enumerate(cells):
            if c['cell_type'] != 'code': continue
            s = src(c)
            flags = {m for m in re.findall(r'^#\|\s*(slow|cuda)\b', s, re.M)}
            if flags: errs.append(f'{rel} cell {i}: #| {" #| ".join(sorted(flags))} cell (move it to a walkthrough or bench/)')
            if not s.startswith('#| export') and SETUP.search(s): errs.append(f'{rel} cell {i}: a set-up cell (install, Drive, notebook_setup) in a source notebook')
    elif fn.parent.name == 'tutorials':
        n_wt += 1
        tagged = [i for i, c in enumerate(cells) if 'parameters' in c.get('metadata', {}).get('tags', [])]
        if len(tagged) != 1: errs.append(f'{rel}: {len(tagged)} cells tagged "parameters", expected 1')
        if not any('colab.research.google.com/github/' in src(c) and fn.name in src(c) for c in cells): errs.append(f'{rel}: no "Open in Colab" badge to itself')
side = (root/'nbs'/'sidebar.yml').read_text(encoding='utf-8') if (root/'nbs'/'sidebar.yml').exists() else ''
for fn in sorted((root/'nbs').rglob('*.ipynb')):   # the docs sidebar is written by hand: every page must be in it
    rel = fn.relative_to(root/'nbs').as_posix()
    if '.ipynb_checkpoints' not in rel and not fn.name.startswith('_') and f'- {rel}' not in side: errs.append(f'nbs/sidebar.yml: {rel} is not listed')
print(f'{n_src} source notebooks, {n_wt} walkthroughs checked: {len(errs)} problems')
if errs: print('\n'.join(errs)); sys.exit(1)
