#!/usr/bin/env python3
"""Run the walkthrough notebooks (nbs/tutorials/) with papermill, top to bottom with only their parameters set, as a user
runs them on Colab, and check what they leave.

The data and runs folders are put on a stand-in Google Drive (`.ci/stand_ins/google/colab`, on PYTHONPATH): a temporary
folder that `drive.mount` links at /content/drive. Each notebook starts as in a fresh Colab runtime, Drive not mounted,
and must mount it exactly once. Where /content already exists and is not ours, the notebooks get the folders' real
paths instead.

    python .ci/walkthroughs.py --data SYNTH --runs RUNS --out OUT --preset quick [--kill] [--only train]

SYNTH: a `stroke-ct synth` set with its MASK folders removed (the public release's layout; it is copied, not changed).
RUNS, OUT: new or empty folders (the run folders; the executed notebooks and papermill's logs).
--kill: interrupt 01_train by killing its kernel once a classifier has finished, run it again, and check that the run
continued (finished models untouched) and completed. --only train: run 01_train once, nothing else.
Exits 1 unless every check passed; the last line says `walkthroughs: N passed, M failed`."""
import argparse, hashlib, json, os, re, shutil, signal, subprocess, sys, tempfile, time, traceback
from pathlib import Path
import psutil

ROOT = Path(__file__).resolve().parent.parent
TUT, STAND_INS = ROOT/'nbs'/'tutorials', ROOT/'.ci'/'stand_ins'
TIMEOUT = 900          # seconds for one papermill run
SKIPPED = 'finished earlier, skipped'   # what `classify.train_classifiers` logs for a model it keeps
results = []           # (check, passed, seconds, note)

def say(msg): print(f'[walkthroughs] {msg}', flush=True)

class Failed(Exception): "A check failed (its message says why)"

def check(name, fn, *args):
    "Run one check, record it, and return what it returned (None when it failed)"
    t = time.time()
    try:   # fn returns a note, or (a value for later checks, a note)
        res, ok = fn(*args), True
        res, note = res if isinstance(res, tuple) else (res, res)
    except Failed as e: res, ok, note = None, False, str(e)
    except Exception as e: traceback.print_exc(); res, ok, note = None, False, f'{type(e).__name__}: {e} (a bug in this script?)'
    results.append((name, ok, time.time() - t, note))
    say(f"{'PASS' if ok else 'FAIL'} {name} ({time.time() - t:.0f} s){': ' + note if note else ''}")
    return res

def need(cond, msg):
    if not cond: raise Failed(msg)

# ---------------------------------------------------------------- the stand-in Drive
class Drive:
    "The data and runs folders where the notebooks see them: under /content/drive/MyDrive (stand-in Drive) or, failing that, as they are"
    def __init__(self, data, runs):
        self.fake = Path(tempfile.mkdtemp(prefix='stroke_ct-walkthroughs-'))
        my = self.fake/'MyDrive'; my.mkdir()
        t = time.time()
        shutil.copytree(data, my/'data', symlinks=True)   # the notebooks rebuild its masks: a copy, never the original
        self.runs_host = Path(runs).resolve(); self.runs_host.mkdir(parents=True, exist_ok=True)
        (my/'runs').symlink_to(self.runs_host, target_is_directory=True)
        self.slices = my/'new_slices'; self.slices.mkdir()   # unlabelled slices to predict: the set's PNGs, flat
        for f in sorted(Path(data).rglob('*.png')):
            if f.parent.name == 'PNG': shutil.copy2(f, self.slices/f.name)
        say(f'stand-in Drive {self.fake}: copied the data, {len(list(self.slices.iterdir()))} PNG slices to predict ({time.time() - t:.1f} s)')
        self.made_content, self.mounted = False, True
        content, mp = Path('/content'), Path('/content/drive')
        self._clear_stale(content, mp)
        if not content.exists():
            try: content.mkdir(); self.made_content = True
            except OSError as e: self.mounted = False; say(f'cannot make /content ({e}): the notebooks get the real paths, no Drive mount')
        elif not os.path.lexists(mp): self.mounted = False; say('/content exists and is not ours: the notebooks get the real paths, no Drive mount')
        else: self.mounted = False; say(f'{mp} exists and is not ours: the notebooks get the real paths, no Drive mount')
        base = Path('/content/drive/MyDrive') if self.mounted else my
        self.data, self.runs, self.new_slices = base/'data', base/'runs', base/'new_slices'
        self.data_host = my/'data'

    @staticmethod
    def _clear_stale(content, mp):
        "A /content/drive link left by an earlier run of this script that died (its target gone), and its /content"
        if mp.is_symlink() and 'stroke_ct-walkthroughs-' in os.readlink(mp) and not mp.exists():
            mp.unlink(); say(f'removed a stale {mp} from an earlier run')
            if content.is_dir() and not any(content.iterdir()): content.rmdir()

    def mounts(self)->list:
        "The mounts the stand-in logged: (pid, mount point)"
        f = self.fake/'.mounts'
        return [tuple(l.split('\t')[:2]) for l in f.read_text().splitlines()] if f.exists() else []

    def unmount(self):
        "Remove the stand-in mount (only ours): each notebook starts as in a fresh Colab runtime, Drive not mounted"
        mp = Path('/content/drive')
        if mp.is_symlink() and Path(os.readlink(mp)) == self.fake: mp.unlink()

    def close(self):
        self.unmount()
        if self.made_content:
            try: Path('/content').rmdir()
            except OSError as e: say(f'left /content in place: {e}')
        shutil.rmtree(self.fake, ignore_errors=True)

# ---------------------------------------------------------------- papermill
def descendants(pid)->list:
    try: return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess: return []

def kill_tree(p):
    "Kill papermill and what it started (its kernel and the kernel's workers): processes this script started"
    procs = descendants(p.pid)
    for o in [*procs, psutil.Process(p.pid)] if p.poll() is None else procs:
        try: o.kill()
        except psutil.NoSuchProcess: pass
    psutil.wait_procs(procs, timeout=10)

def nb_text(fn)->str:
    "Every output of an executed notebook as text"
    nb, out = json.loads(Path(fn).read_text(encoding='utf-8')), []
    for c in nb['cells']:
        for o in c.get('outputs', []):
            out.append(''.join(o.get('text', '')) + ''.join(o.get('data', {}).get('text/plain', '')) + '\n'.join(o.get('traceback', [])))
    return re.sub(r'\x1b\[[0-9;]*m', '', '\n'.join(out))

def nb_error(fn)->str:
    "The error an executed notebook stopped at, as the user would see it"
    try: nb = json.loads(Path(fn).read_text(encoding='utf-8'))
    except (OSError, ValueError): return ''
    for i, c in enumerate(nb['cells']):
        for o in c.get('outputs', []):
            if o.get('output_type') == 'error':
                tb = re.sub(r'\x1b\[[0-9;]*m', '', '\n'.join(o.get('traceback', [])))
                return f"cell {i}:\n" + '\n'.join(tb.splitlines()[-40:])
    return ''

class Papermill:
    "Runs a walkthrough with papermill and the stand-ins, logging into OUT"
    def __init__(self, out, drive, env):
        self.out, self.drive, self.env, self.n = Path(out), drive, env, 0
        self.cwd = drive.fake/'cwd'; self.cwd.mkdir()   # the notebooks' working folder, like Colab's /content

    def start(self, nb, tag, **params):
        src, dst = TUT/f'{nb}.ipynb', self.out/f'{nb}{tag}.ipynb'
        cmd = [sys.executable, '-m', 'papermill', str(src), str(dst), '-k', 'python3', '--cwd', str(self.cwd),
               '--log-output', '--no-progress-bar']
        for k, v in params.items(): cmd += ['-r', k, str(v)]
        say('$ ' + ' '.join(cmd[1:3]) + ' ' + ' '.join(cmd[3:]).replace(str(ROOT) + '/', ''))
        log = open(self.out/f'{nb}{tag}.log', 'w')
        self.drive.unmount(); self.n += 1
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=ROOT)
        p.started = time.time()
        return p, dst, log

    def wait(self, p, dst, log, expect_ok=True):
        "Wait for papermill (killing it at TIMEOUT); on an unexpected exit show the notebook's error and the log's tail"
        try: rc = p.wait(timeout=max(1, TIMEOUT - (time.time() - p.started)))
        except subprocess.TimeoutExpired: kill_tree(p); rc = f'killed after {TIMEOUT} s'
        finally: log.close()
        if (rc == 0) != expect_ok:
            err = nb_error(dst)
            tail = '\n'.join(Path(log.name).read_text(errors='replace').splitlines()[-(8 if err else 40):])
            print(f'---- {dst.name}: papermill exit {rc}; the error in the notebook:\n{err or "(none stored)"}\n'
                  f'---- the last lines of {log.name}:\n{tail}\n----', flush=True)
        return rc

    def run(self, nb, tag='', **params):
        p, dst, log = self.start(nb, tag, **params)
        rc = self.wait(p, dst, log)
        need(rc == 0, f'papermill {nb}: exit {rc} (the error is printed above)')
        return dst

# ---------------------------------------------------------------- the checks
def sha256(fn):
    h = hashlib.sha256()
    with open(fn, 'rb') as f:
        for b in iter(lambda: f.read(1 << 20), b''): h.update(b)
    return h.hexdigest()

def fingerprint(folder)->dict:
    "relative path -> (sha256, mtime_ns) of every file under `folder`"
    return {str(f.relative_to(folder)): (sha256(f), f.stat().st_mtime_ns) for f in sorted(Path(folder).rglob('*')) if f.is_file()}

def table1_models(run)->set:
    f = run/'metrics'/'table1_training.csv'
    try: return {l.split(',')[0] for l in f.read_text().splitlines()[1:]}
    except OSError: return set()

def finished(run, archs)->list:
    "Classifiers the run has finished as `classify.train_classifiers` counts them: model.json saved and a Table 1 row"
    t1 = table1_models(run)
    return [a for a in archs if (run/'models'/'classifiers'/a/'model.json').exists() and a in t1]

def check_complete_run(run, archs):
    M = run/'models'
    miss = [f'classifiers/{a}' for a in archs if not (M/'classifiers'/a/'model.json').exists()]
    miss += [n for n in ('unet/model.json', 'ensemble.json', 'complete.json') if not (M/n).exists()]
    miss += [n for n in ('metrics/table1_training.csv', 'metrics/table2_test.csv', 'report.md', 'report.html') if not (run/n).exists()]
    need(not miss, f'{run} lacks {", ".join(miss)}')

def train_once(pm, drive, run, archs, preset):
    pm.run('01_train', data=drive.data, runs=drive.runs, preset=preset)
    check_complete_run(run, archs)
    return f'{len(archs)} classifiers, U-Net, complete.json, report.html'

def train_interrupted(pm, drive, run, archs, preset):
    "Start 01_train, kill its kernel once a classifier has finished and while another is training; papermill must fail"
    p, dst, log = pm.start('01_train', '.interrupted', data=drive.data, runs=drive.runs, preset=preset)
    t0 = p.started
    # A classifier counts as finished when `classify.train_classifiers` would keep it: model.json saved and its Table 1 row
    # written (a moment later). Killing between the two would rightly retrain it, and this check would then fail.
    while True:
        if p.poll() is not None:
            pm.wait(p, dst, log, expect_ok=False)
            raise Failed(f'papermill ended (exit {p.returncode}) before a classifier finished')
        done = finished(run, archs)
        if done: break
        if time.time() - t0 > TIMEOUT: kill_tree(p); log.close(); raise Failed(f'no classifier finished in {TIMEOUT} s')
        time.sleep(0.2)
    if len(done) == len(archs) or (run/'models'/'complete.json').exists():
        kill_tree(p); log.close(); raise Failed('every classifier had finished before the kill: nothing left to interrupt')
    kernels = [o for o in descendants(p.pid) if any('ipykernel' in a for a in o.cmdline())]
    need(len(kernels) == 1, f'expected one ipykernel under papermill, found {len(kernels)}')
    k = kernels[0]; workers = k.children(recursive=True)
    training = next(a for a in archs if a not in done)
    say(f'{", ".join(done)} finished after {time.time() - t0:.0f} s, {training} training: SIGKILL to the kernel (pid {k.pid})')
    k.send_signal(signal.SIGKILL)
    rc = pm.wait(p, dst, log, expect_ok=False)
    need(rc != 0, 'papermill exited 0 after its kernel was killed')
    _, alive = psutil.wait_procs(workers, timeout=10)
    for o in alive: o.kill()   # the dead kernel's own workers: started by this script's papermill
    done = finished(run, archs)
    need(len(done) < len(archs), 'every classifier finished after all')
    partial = [a for a in archs if a not in done and (run/'models'/'classifiers'/a/'model.json').exists()]
    snap = {a: fingerprint(run/'models'/'classifiers'/a) for a in done}
    note = (f"papermill exit {rc} while {training} trained; {', '.join(done)} finished ({sum(map(len, snap.values()))} files fingerprinted)"
            + (f"; {', '.join(partial)} saved without its Table 1 row (retrained on resume)" if partial else '')
            + (f'; killed {len(alive)} worker(s) the kernel left' if alive else ''))
    return snap, note

def train_resumed(pm, drive, run, archs, preset, snap):
    "01_train again with the same parameters: exit 0, the finished classifiers untouched and logged as skipped, the run complete"
    dst = pm.run('01_train', data=drive.data, runs=drive.runs, preset=preset)
    for a, fp in snap.items():
        now = fingerprint(run/'models'/'classifiers'/a)
        need(now == fp, f'classifier {a} changed on resume: '
                        + ', '.join(sorted(f for f in set(fp) | set(now) if fp.get(f) != now.get(f))))
    text = nb_text(dst)
    need(SKIPPED in text, f'the resumed notebook never says "{SKIPPED}"')
    skipped = [a for a in snap if f'classifier {a}: {SKIPPED}' in text]
    need(len(skipped) == len(snap), f'skipped {skipped}, expected {list(snap)}')
    check_complete_run(run, archs)
    return f"{', '.join(skipped)} {SKIPPED} with identical checksums and mtimes; every model and complete.json there"

def evaluate_nb(pm, drive, run_nb, run, preset):
    pm.run('02_evaluate', run=run_nb, data=drive.data, runs=drive.runs, preset=preset)
    ev = run/'evaluations'/drive.data.name
    miss = [n for n in ('report.md', 'metrics/classification.csv', 'predictions.csv', 'evaluate.json') if not (ev/n).exists()]
    need(not miss, f'{ev} lacks {", ".join(miss)}')
    need(any((ev/'figures').glob('*.png')), f'{ev}/figures has no figure')
    return f"report.md, Table 2 and {len(list((ev/'figures').glob('*.png')))} figures in {ev}"

def predict_nb(pm, drive, run_nb, run, preset):
    t0 = time.time()
    pm.run('03_predict', run=run_nb, data=drive.new_slices, runs=drive.runs, preset=preset)
    pred = drive.runs_host/'predictions'/drive.new_slices.name
    n_in = len(list(drive.slices.glob('*.png')))
    need((pred/'stage1.csv').exists() and (pred/'stage1.txt').exists(), f'{pred} lacks stage1.csv or stage1.txt')
    n_rows = len((pred/'stage1.csv').read_text(encoding='utf-8').splitlines()) - 1
    n_masks = len(list((pred/'masks').glob('*.png')))
    need(n_rows == n_in, f'stage1.csv has {n_rows} rows for {n_in} slices')
    need(n_masks == n_in, f'{n_masks} masks for {n_in} slices')
    need((run/'report.html').exists() and (run/'report.html').stat().st_mtime >= t0, f'{run}/report.html was not written by 03_predict')
    pacs, extra = pred.parent/f'{pred.name}_pacs', ''
    from stroke_ct.pacs import orthanc_available
    if orthanc_available():   # the PACS section runs on a local Orthanc (the notebook asks the same function)
        stored = json.loads((pacs/'stored.json').read_text()) if (pacs/'stored.json').exists() else {}
        need(stored.get('n_stored', 0) >= 1 and not stored.get('n_failed'), f'{pacs}/stored.json: no DICOM-SEG stored on the local Orthanc ({stored})')
        need(any((pacs/'from_pacs').rglob('*.dcm')), f'{pacs}/from_pacs: the DICOM-SEG was not fetched back')
        extra = f"; PACS round trip: {stored['n_stored']} DICOM-SEG stored and fetched back ({pacs})"
    return f'{n_rows} stage-1 rows and {n_masks} masks in {pred}; {run}/report.html{extra}'

def drive_mounts(drive, n_kernels):
    m = drive.mounts()
    if not drive.mounted:
        need(not m, f'{len(m)} mounts, expected none (real paths)'); return 'no Drive (real paths), no mount'
    pids = [p for p, _ in m]
    need(len(m) == n_kernels and len(set(pids)) == len(pids), f'{len(m)} mount calls from {len(set(pids))} kernels; expected one in each of {n_kernels}')
    return f'one mount in each of {n_kernels} kernels'

# ---------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--data', required=True, help='a stroke-ct synth set without its MASK folders (copied, not changed)')
    ap.add_argument('--runs', required=True, help='runs folder (new or empty)')
    ap.add_argument('--out', required=True, help='executed notebooks and papermill logs (new or empty)')
    ap.add_argument('--preset', default='quick', choices=['quick', 'demo', 'teknofest'])
    ap.add_argument('--only', choices=['train'], help='run 01_train only, once')
    ap.add_argument("--kill", action="store_true", help="interrupt 01_train (kill its kernel) and check that a second run continues it (not with --only)")
    a = ap.parse_args()
    for d in (a.runs, a.out):
        if Path(d).exists() and any(Path(d).iterdir()): sys.exit(f'{d} is not empty: give a new or empty folder')
    if not Path(a.data).is_dir(): sys.exit(f'{a.data}: no such folder')
    Path(a.out).mkdir(parents=True, exist_ok=True)
    from stroke_ct.run import RunConfig
    archs = list(RunConfig.preset(a.preset).classifiers.archs)
    t_all = time.time()
    drive = Drive(a.data, a.runs)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))   # clean up /content on a CI timeout too
    try:
        env = {k: v for k, v in os.environ.items() if k not in ('STROKE_CT_DATA', 'STROKE_CT_RUNS')}
        env['PYTHONPATH'] = os.pathsep.join([str(STAND_INS), *filter(None, [env.get('PYTHONPATH')])])
        env['STROKE_CT_FAKE_DRIVE'] = str(drive.fake)
        pm = Papermill(a.out, drive, env)
        run, run_nb = drive.runs_host/a.preset, drive.runs/a.preset   # as this script sees it; as the notebooks see it
        say(f'data {drive.data}, runs {drive.runs} (the notebooks\' paths); run folder {run}; classifiers {", ".join(archs)}')
        if a.kill and not a.only:
            snap = check('01_train interrupted (kernel killed)', train_interrupted, pm, drive, run, archs, a.preset)
            trained = snap is not None and check('01_train resumed', train_resumed, pm, drive, run, archs, a.preset, snap) is not None
        else: trained = check('01_train', train_once, pm, drive, run, archs, a.preset) is not None
        if not a.only:
            for name, fn in (('02_evaluate', evaluate_nb), ('03_predict', predict_nb)):
                if trained: check(name, fn, pm, drive, run_nb, run, a.preset)
                else: results.append((name, False, 0., 'not run: no trained run')); say(f'FAIL {name}: not run, no trained run')
        check('Drive mounted once per kernel', drive_mounts, drive, pm.n)
    finally: drive.close()
    n_ok = sum(ok for _, ok, _, _ in results)
    print('\n'.join(f"  {'pass' if ok else 'FAIL'}  {t:6.0f} s  {n}{'  (' + note + ')' if note else ''}" for n, ok, t, note in results))
    print(f'walkthroughs took {time.time() - t_all:.0f} s')
    print(f'walkthroughs: {n_ok} passed, {len(results) - n_ok} failed')
    sys.exit(0 if n_ok == len(results) else 1)

if __name__ == '__main__': main()
