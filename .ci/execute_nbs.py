#!/usr/bin/env python3
"""Execute notebooks in place, saving their outputs, exactly as `nbdev_test` would run them.

nbdev's docs show the outputs stored in each notebook (quarto does not execute them), so we commit
notebooks with outputs. Cells carrying a `tst_flags` flag (`#| slow`, `#| cuda`, `#| notest`) or
`#| eval: false` are skipped, as in `nbdev_test`. Usage: `python .ci/execute_nbs.py [--clean-only] [NB.ipynb ...]`
(default: every notebook in nbs/). Run `nbdev_clean` afterwards.

The stored outputs are what the docs show, so they are written as a reader should see them (`.ci/check_outputs.py`
checks it): no text progress bars (fastprogress is silenced; the bars that print anyway are taken out), and no paths
of this machine: a path inside a scratch folder an example made (`core.scratch_dir`)
is shown relative to that folder (the folder itself as `.`), as if the example ran there; this repository's folder
as `.` and the sample data beside it as `../shared`; warnings raised inside
third-party packages are dropped. Any other warning or path is left in place, for the check to catch.
"""
import sys, os, re, time, tempfile
from pathlib import Path
from execnb.nbio import read_nb, write_nb
from execnb.shell import CaptureShell
from fastcore.foundation import working_directory
from nbdev.config import get_config
from nbdev.process import NBProcessor
from nbdev.frontmatter import FrontmatterProc

cfg = get_config()
flags = set(cfg.tst_flags.split())
CLEAN_ONLY = '--clean-only' in sys.argv   # clean the stored outputs without executing
fns = [Path(o) for o in sys.argv[1:] if o != '--clean-only'] or sorted(p for p in cfg.nbs_path.glob('*.ipynb') if not p.name.startswith('_'))
os.environ['IN_TEST'] = '1'
import fastprogress.fastprogress as _fp
_fp.NO_BAR = True                                   # no text progress bars in the stored outputs
ROOT = Path.cwd().resolve()
_SCRATCH = re.compile(re.escape(str(Path(tempfile.gettempdir()).resolve())) + r'/stroke_ct-[^/\s\'"<>]+(/?)')

_THIRD_PARTY_WARNING = re.compile(r'^[^\n]*[/\\](?:site|dist)-packages[/\\][^\n]*:\d+: \w*Warning: [^\n]*\n(?:[ \t]+[^\n]*\n?)?', re.M)

def _clean_text(s:str)->str:
    "A stored output's text as a reader should see it: no warning raised inside a third-party package, paths in a scratch folder relative to it, this repository as '.', the sample data beside it as ../shared"
    s = _THIRD_PARTY_WARNING.sub('', s)
    s = s.replace(str(ROOT.parent/'shared'), '../shared')
    return _SCRATCH.sub(lambda m: '' if m.group(1) else '.', s).replace(str(ROOT) + os.sep, '').replace(str(ROOT), '.')

_BAR = re.compile(r'(Epoch \d+/\d+ : )?\|[█\-]*\| \d+\.\d\d% \[\d+/\d+[^\]]*\]|█')
_RICH_BAR = re.compile(r'━{5,}.*\d+% +\d+/\d+')   # rich's bars (NNCF's "Statistics collection ━━━ 100% 24/24 • 0:00:00"): a line each

def _no_bars(s:str)->str:
    "Stream text without progress bars: fastprogress's console bars (the bar pieces, and the carriage-return lines they leave) and rich's bar lines"
    lines = []
    for l in s.split('\n'):
        if _RICH_BAR.search(l):
            l = '\r'.join(seg for seg in l.split('\r') if not _RICH_BAR.search(seg))
            if not l.strip(): continue
        if not _BAR.search(l): lines.append(l); continue
        kept = [seg for seg in _BAR.sub('', l).split('\r') if seg.strip()]
        if kept: lines.append(kept[-1].rstrip() if len(kept) == 1 else ' '.join(k.strip() for k in kept))
    return '\n'.join(lines)

def _clean(out):
    "Clean every text of one output in place; None for an output that is only a progress bar"
    if any('<progress' in (''.join(v) if isinstance(v, list) else str(v)) for v in out.get('data', {}).values()): return None
    if 'text' in out:
        s = _no_bars(_clean_text(''.join(out['text']) if isinstance(out['text'], list) else out['text']))
        if not s.strip(): return None
        out['text'] = s
    for k, v in list(out.get('data', {}).items()):
        if k.startswith('text/'): out['data'][k] = _clean_text(''.join(v) if isinstance(v, list) else v)
    return out

def clean_outputs(fn:Path):
    "Clean the outputs stored in notebook `fn` in place (no execution)"
    nb = read_nb(fn)
    for c in nb.cells:
        if c.cell_type == 'code': c['outputs'] = [o for o in (_clean(o) for o in c.get('outputs', [])) if o is not None]
    write_nb(nb, fn)

def _skip(cell):
    if cell.cell_type != 'code': return True
    d = getattr(cell, 'directives_', {}) or {}
    if d.get('eval:', [''])[0].lower() == 'false': return True
    return bool(flags & d.keys())

ok = True
if CLEAN_ONLY:
    for fn in fns: clean_outputs(fn)
    sys.exit(0)
for fn in fns:
    t = time.time()
    raw = read_nb(fn)
    nb = NBProcessor(fn, procs=FrontmatterProc, process=True).nb
    for c in nb.cells:
        if c.cell_type == 'code': c['outputs'] = []   # a cell that prints nothing now keeps no output from an earlier run
    k = CaptureShell(fn)
    try:
        with working_directory(fn.parent): k.run_all(nb, exc_stop=True, preproc=_skip)
    except Exception:
        sys.stderr.write(k.prettytb(fname=fn) + '\n'); ok = False; continue
    for rc, pc in zip(raw.cells, nb.cells):
        if rc.cell_type == 'code':
            rc['outputs'] = [o for o in (_clean(o) for o in pc.get('outputs', [])) if o is not None] if not _skip(pc) else []
            rc['execution_count'] = None
    write_nb(raw, fn)
    import matplotlib.pyplot as plt; plt.close('all')   # figures left open must not show up in the next notebook
    print(f'{fn}: executed in {time.time()-t:.0f} s')
sys.exit(0 if ok else 1)
