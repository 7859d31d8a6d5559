"Compile every code cell of every notebook, slow ones included (nbdev_test skips those), with IPython magic and shell lines blanked: a syntax error in a cell no test runs still fails CI"
import json, glob, sys, re
bad = 0
for fn in sorted(glob.glob(sys.argv[1] if len(sys.argv) > 1 else 'nbs/**/*.ipynb', recursive=True)):
    for i, c in enumerate(json.load(open(fn))['cells']):
        if c['cell_type'] != 'code': continue
        src = ''.join(c['source'])
        src = '\n'.join('' if re.match(r'\s*[%!]', l) else l for l in src.split('\n'))
        try: compile(src, f'{fn}[{i}]', 'exec')
        except SyntaxError as ex: bad += 1; print(f'{fn} cell {i} ({c.get("id")}): {ex}')
print('syntax errors:', bad)
sys.exit(1 if bad else 0)
