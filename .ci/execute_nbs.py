#!/usr/bin/env python3
"""Execute notebooks in place, saving their outputs, exactly as `nbdev_test` would run them.

nbdev's docs show the outputs stored in each notebook (quarto does not execute them), so we commit
notebooks with outputs. Cells carrying a `tst_flags` flag (`#| slow`, `#| cuda`, `#| notest`) or
`#| eval: false` are skipped, as in `nbdev_test`. Usage: `python .ci/execute_nbs.py [NB.ipynb ...]`
(default: every notebook in nbs/). Run `nbdev_clean` afterwards.
"""
import sys, os, time
from pathlib import Path
from execnb.nbio import read_nb, write_nb
from execnb.shell import CaptureShell
from fastcore.foundation import working_directory
from nbdev.config import get_config
from nbdev.process import NBProcessor
from nbdev.frontmatter import FrontmatterProc

cfg = get_config()
flags = set(cfg.tst_flags.split())
fns = [Path(o) for o in sys.argv[1:]] or sorted(p for p in cfg.nbs_path.glob('*.ipynb') if not p.name.startswith('_'))
os.environ['IN_TEST'] = '1'

def _skip(cell):
    if cell.cell_type != 'code': return True
    d = getattr(cell, 'directives_', {}) or {}
    if d.get('eval:', [''])[0].lower() == 'false': return True
    return bool(flags & d.keys())

ok = True
for fn in fns:
    t = time.time()
    raw = read_nb(fn)
    nb = NBProcessor(fn, procs=FrontmatterProc, process=True).nb
    k = CaptureShell(fn)
    try:
        with working_directory(fn.parent): k.run_all(nb, exc_stop=True, preproc=_skip)
    except Exception:
        sys.stderr.write(k.prettytb(fname=fn) + '\n'); ok = False; continue
    for rc, pc in zip(raw.cells, nb.cells):
        if rc.cell_type == 'code':
            rc['outputs'] = pc.get('outputs', []) if not _skip(pc) else []
            rc['execution_count'] = None
    write_nb(raw, fn)
    import matplotlib.pyplot as plt; plt.close('all')   # figures left open must not show up in the next notebook
    print(f'{fn}: executed in {time.time()-t:.0f} s')
sys.exit(0 if ok else 1)
