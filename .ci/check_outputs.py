"""Fail when a notebook's stored outputs or prose would mislead a reader of the docs.

Stored outputs are what the docs site shows: they must not carry one machine's paths (a temporary folder, a virtual
environment, a home folder), warnings, or text progress bars (which render as a wall of block characters); and the
prose must not point at files outside this repository. Usage:

    python .ci/check_outputs.py            # every notebook under nbs/
    python .ci/check_outputs.py NB ...     # these notebooks
"""
import json, re, sys
from pathlib import Path

OUTPUT_PROBLEMS = {
    'a machine path': re.compile(r'(?<![\w.])(/tmp/|/var/tmp/|/work/|/home/\w|/root/|/Users/\w|[A-Z]:\\Users\\|/private/var/)|\bTMPDIR\b'),
    'a virtual environment or installed-package path': re.compile(r'(\.venv|site-packages|dist-packages)[/\\]'),
    'a warning': re.compile(r'\b\w*Warning\b[:(]|^\s*warnings\.warn\(', re.M),
    'a progress bar': re.compile(r'<progress\b|\|[█\-]{10,}\||\d+\.\d\d% \[\d+/\d+|\d+it/s\]|\|█|━{5,}'),
}
PROSE_PROBLEMS = {
    'a file outside the repository': re.compile(r'\.\./shared\b|\bARCHITECTURE\.md\b|\bSTYLE\.md\b|\bshared/data/README\b'),
}

def _texts(out:dict):
    "Every text an output shows"
    if 'text' in out: yield ''.join(out['text'])
    for k, v in out.get('data', {}).items():
        if k.startswith('text/') or k.endswith('json'): yield v if isinstance(v, str) else ''.join(v) if isinstance(v, list) else json.dumps(v)
    if out.get('output_type') == 'error': yield '\n'.join(out.get('traceback', []))

def problems(nb_path:Path)->list:
    "(cell number, what, excerpt) for each problem in one notebook"
    nb, found = json.loads(Path(nb_path).read_text(encoding='utf-8')), []
    for i, c in enumerate(nb['cells']):
        if c['cell_type'] == 'markdown':
            src = ''.join(c['source'])
            for what, rx in PROSE_PROBLEMS.items():
                if m := rx.search(src): found.append((i, what, src[max(0, m.start() - 40):m.end() + 40]))
        for o in c.get('outputs', []):
            if o.get('output_type') == 'error': found.append((i, 'an error', o.get('ename', '')))
            for t in _texts(o):
                for what, rx in OUTPUT_PROBLEMS.items():
                    if m := rx.search(t): found.append((i, what, t[max(0, m.start() - 40):m.end() + 40]))
    return found

def main(args)->int:
    nbs = [Path(a) for a in args] or sorted(p for p in Path('nbs').rglob('*.ipynb') if '.ipynb_checkpoints' not in p.parts)
    bad = 0
    for nb in nbs:
        for i, what, ex in problems(nb):
            bad += 1
            print(f"{nb}: cell {i}: {what}: {ex.strip()[:160]!r}")
    print(f'check_outputs: {len(nbs)} notebooks, {bad} problem(s)')
    return 1 if bad else 0

if __name__ == '__main__': sys.exit(main(sys.argv[1:]))
