#!/usr/bin/env python3
"""Check the import graph of stroke_ct/: each module may import only modules of its own notebook or of lower-numbered
notebooks (the number a module's notebook carries is its place in the layers: 00-09 core, metrics, report, data;
10-19 model files, configuration and inference; 20-29 training; 50-59 applications; 90 the command line). Imports
inside functions count too, and no module imports a private name (`_x`) of another. Exits non-zero listing every
violation, and every import cycle."""
import ast, re, sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent
lib = root/'stroke_ct'
mods, number, lines, errs = {}, {}, {}, []
for f in sorted(lib.rglob('*.py')):
    name = '.'.join(f.with_suffix('').relative_to(root).parts).removesuffix('.__init__')
    text = f.read_text(encoding='utf-8')
    m = re.search(r'File to edit: \S*?nbs/(\d+)[a-z]?_', text)
    if m: number[name] = int(m.group(1))
    deps = []
    for n in ast.walk(ast.parse(text)):
        if isinstance(n, ast.ImportFrom):
            if n.level:
                base = name.split('.')[:len(name.split('.')) - n.level + (1 if f.name == '__init__.py' else 0)]
                target = '.'.join(base + ([n.module] if n.module else []))
            else: target = n.module or ''
            if not target.startswith('stroke_ct'): continue
            for a in n.names:
                sub = f'{target}.{a.name}'
                if any(o.with_suffix('').relative_to(root).parts == tuple(sub.split('.')) for o in lib.rglob('*.py')): deps.append((sub, n.lineno))
                else:
                    deps.append((target, n.lineno))
                    if a.name.startswith('_') and not a.name.startswith('__'): errs.append(f'{name}:{n.lineno}: imports private name {a.name} of {target}')
        elif isinstance(n, ast.Import):
            deps += [(a.name, n.lineno) for a in n.names if a.name.startswith('stroke_ct') and a.name != 'stroke_ct']
    mods[name] = {d for d, _ in deps if d != name and d != 'stroke_ct'}
    lines[name] = deps
for name, deps in lines.items():
    for d, line in deps:
        if d in number and name in number and number[d] > number[name]:
            errs.append(f'{name}:{line}: imports {d} (notebook {number[d]:02d}) from a lower layer (notebook {number[name]:02d})')

seen, stack, cycles = set(), [], set()
def visit(m):
    if m in stack: cycles.add(' -> '.join(stack[stack.index(m):] + [m])); return
    if m in seen: return
    seen.add(m); stack.append(m)
    for d in sorted(mods.get(m, ())): visit(d)
    stack.pop()
for m in sorted(mods): visit(m)
errs += [f'import cycle: {c}' for c in sorted(cycles)]
missing = [m for m in mods if m not in number and m not in ('stroke_ct', 'stroke_ct.data', 'stroke_ct._modidx')]
errs += [f'{m}: no notebook number found (not exported by nbdev?)' for m in missing if m != 'stroke_ct.__main__']
print(f'import graph: {len(mods)} modules, {sum(map(len, mods.values()))} imports between them, {len(errs)} problems')
if errs: print('\n'.join(errs)); sys.exit(1)
