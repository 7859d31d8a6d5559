#!/usr/bin/env python3
"""Docs checks we can run without quarto (which builds the real site on GitHub):
1. every exported name (each module's `__all__`) has a docstring (or docments);
2. `nbdev_proc_nbs` has processed the notebooks (run it first), and each processed notebook renders to
   HTML with nbconvert, with the figures its stored outputs hold.
Writes the HTML pages to _proc/_html/ so a person can open them."""
import sys, importlib, inspect, json
from pathlib import Path
from nbconvert import HTMLExporter
import nbformat

root = Path(__file__).resolve().parent.parent
errs = []
from stroke_ct._modidx import d
for mod, syms in d['syms'].items():
    m = importlib.import_module(mod)
    for sym in syms:
        parts = sym[len(mod)+1:].split('.')
        if len(parts) > 1 or parts[0].startswith('_'): continue  # exported names are the module's public top-level names (__all__)
        obj = m
        for part in sym[len(mod)+1:].split('.'): obj = getattr(obj, part, None)
        if obj is None: errs.append(f'{sym}: not found'); continue
        if isinstance(obj, property): obj = obj.fget
        doc = inspect.getdoc(obj) if (inspect.isfunction(obj) or inspect.isclass(obj) or inspect.ismethod(obj) or callable(obj)) else 'constant'
        if not doc: errs.append(f'{sym}: no docstring')
print(f'docstrings: exported names checked, {len(errs)} without one')

proc = root/'_proc'
if not proc.exists(): sys.exit('_proc/ missing: run nbdev_proc_nbs first')
out = proc/'_html'; out.mkdir(exist_ok=True)
exp = HTMLExporter()
pages = 0
for fn in sorted(proc.rglob('*.ipynb')):   # the walkthroughs (tutorials/) too
    nb = nbformat.read(fn, as_version=4)
    n_img = sum(1 for c in nb.cells if c.cell_type == 'code' for o in c.get('outputs', []) if 'image/png' in o.get('data', {}))
    try: html, _ = exp.from_notebook_node(nb)
    except Exception as e: errs.append(f'{fn.name}: nbconvert failed: {e}'); continue
    if html.count('<img') < n_img: errs.append(f'{fn.name}: {n_img} figures in outputs, {html.count("<img")} in HTML')
    (out/(fn.stem + '.html')).write_text(html, encoding='utf-8'); pages += 1
    print(f'{fn.name}: rendered, {n_img} figures')
print(f'rendered {pages} pages to {out}')
if errs: print('\n'.join(errs)); sys.exit(1)
