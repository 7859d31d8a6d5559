#!/usr/bin/env python3
"""The robustness suite ("nothing lost, nothing silent"): every `stroke-ct` command under bad or odd inputs,
interruptions, full disks, re-runs and resumes, each case printed as handled or NOT HANDLED with what was seen, and a
last line `robustness: N passed, M failed`. CI runs every case (`.ci/run`, about 8 minutes on 2 cores).

A case is handled when the command gives a clear per-file error or a result, exits non-zero when something was not
done, leaves nothing partial and says nothing in silence (no traceback, no missing row, no mask without its row).

    python tests/robustness.py                  # every case
    python tests/robustness.py --only predict   # the cases whose group, description or function name contains a word
    python tests/robustness.py --list           # the cases, without running them
    python tests/robustness.py --json out.json  # also write the results

Commands run in this process through `stroke_ct.cli.main` (an uncaught exception counts as a traceback), except the
ones that need a process of their own (kill -9, Ctrl-C, a second predict holding the output folder, a memory limit).
Models are tiny untrained ones (what is judged is the plumbing, not the answers). Full-disk cases mount a small
tmpfs when this process may (root in a container usually may); otherwise they are reported as not run. The exit
status is the number of cases not handled (0: all handled).
"""
from __future__ import annotations
import argparse, contextlib, io, json, os, pickle, shutil, signal, struct, subprocess, sys, tempfile, time, traceback, warnings, zlib
from pathlib import Path

CASES = []   # (group, name, function)

def case(group, name):
    "Register a case: the function, named by what it checks, returns (handled, what was seen)"
    def f(fn): CASES.append((group, name, fn)); return fn
    return f

# ---------------------------------------------------------------------------------------------------- helpers
W = None       # the scratch folder (set in main)
ENV = {}       # shared fixtures: models folder, slices, ...

def run_cli(*args):
    "(exit status, stdout, stderr, traceback or '') of `stroke-ct ARGS` run in this process"
    from stroke_ct.cli import main
    out, err, tb = io.StringIO(), io.StringIO(), ''
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        try: code = main([str(a) for a in args])
        except SystemExit as e: code = e.code
        except BaseException as e: code, tb = None, ''.join(traceback.format_exception(e))
    return code, out.getvalue(), err.getvalue(), tb

def run_sub(*args, timeout=600, **kw):
    "`python -m stroke_ct ARGS` in a process of its own"
    return subprocess.run([sys.executable, '-m', 'stroke_ct', *map(str, args)], capture_output=True, text=True, timeout=timeout, **kw)

def one_line(err:str)->bool:
    "stderr is one error line (python warnings aside) and no traceback"
    lines = [l for l in err.splitlines() if l.strip() and 'Warning' not in l and not l.startswith(' ')]
    return 'Traceback' not in err and len(lines) == 1

def fresh(name:str)->Path:
    "A new empty-named path under the scratch folder (not made)"
    ENV['n'] = ENV.get('n', 0) + 1
    return W/f'{ENV["n"]:03d}_{name}'

def tables(out:Path)->dict:
    "What a predict run left: rows, errors, skipped, mask ids, stage1.txt ids"
    import pandas as pd
    r = dict(rows=[], errors=[], skipped=[], masks=[], txt=[], partial=(out/'.partial').exists())
    if (out/'stage1.csv').exists(): r['rows'] = pd.read_csv(out/'stage1.csv', dtype={'image_id': str}, keep_default_na=False).to_dict('records')
    for k in ('errors', 'skipped'):
        if (out/f'{k}.csv').exists(): r[k] = pd.read_csv(out/f'{k}.csv', dtype=str, keep_default_na=False).to_dict('records')
    if (out/'masks').exists(): r['masks'] = sorted(p.relative_to(out/'masks').with_suffix('').as_posix() for p in (out/'masks').rglob('*.png'))
    if (out/'stage1.txt').exists(): r['txt'] = [l.split('\t') for l in (out/'stage1.txt').read_text(encoding='utf-8').split('\n')[1:-1]]
    return r

def consistent(out:Path, masks=True)->str:
    "'' when the published outputs agree (every mask has its row and the other way round, stage1.txt one row per line), else what does not"
    t = tables(out)
    ids = sorted(r['image_id'] for r in t['rows'])
    if len(set(ids)) != len(ids): return 'duplicate ids in stage1.csv'
    if masks and t['masks'] != ids: return f"{len(t['masks'])} masks for {len(ids)} rows"
    if any(len(l) != 2 for l in t['txt']): return 'stage1.txt has a row that is not <id><TAB><answer>'
    if sorted(l[0] for l in t['txt']) != ids: return 'stage1.txt and stage1.csv differ'
    return ''

def predict_cli(inputs, out=None, models=None, *extra):
    "Run `stroke-ct predict` in this process; (code, stdout, stderr, traceback, out)"
    out = out or fresh('pred')
    inputs = inputs if isinstance(inputs, (list, tuple)) else [inputs]
    code, o, e, tb = run_cli('predict', *inputs, '--models', models or ENV['models'], '--out', out, '--workers', 0, '--threads', 1, *extra)
    return code, o, e, tb, out

def files_named(rows, key='file')->set: return {Path(r[key]).name for r in rows}

def state(folder:Path)->dict:
    "Every file under `folder` with its bytes, hidden ones aside (the lock, the staging folder of a run in progress)"
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob('*'))
            if p.is_file() and not any(o.startswith('.') for o in p.relative_to(folder).parts)}

# ---------------------------------------------------------------------------------------------------- fixtures
def setup():
    "Phantom slices, a finished run's tiny models folder, and odd files"
    import numpy as np, torch
    from PIL import Image
    from fastai.vision.all import imagenet_stats
    from stroke_ct.metrics import SEG_CLASSES
    from stroke_ct.data.synth import make_synth
    from stroke_ct.data.layout import resolve
    from stroke_ct.modelio import ModelRecord, EnsembleRecord, build_model, save_model, write_ensemble
    from stroke_ct.archs import HEAD_ARGS
    from stroke_ct.runlayout import mark_complete
    torch.set_num_threads(1)
    syn = W/'synth'
    man = resolve(make_synth(syn, n_normal=6, n_ischemic=3, n_hemorrhagic=3, seed=0, progress=False), syn)
    ENV.update(synth=syn, pngs=[Path(p) for p in man.png], dcms=[Path(p) for p in man.dicom])
    md, stats = W/'models', [list(imagenet_stats[0]), list(imagenet_stats[1])]
    for i, a in enumerate(('mobilenet_v2', 'resnet34')):
        torch.manual_seed(i)
        rec = ModelRecord('classifier', a, 32, ['normal', 'stroke'], stats=stats, options=dict(HEAD_ARGS))
        save_model(build_model(rec), rec, md/'classifiers'/a)
    torch.manual_seed(2)
    rec = ModelRecord('unet', 'resnet18', 32, SEG_CLASSES, stats=stats, options=dict(self_attention=True, last_cross=True))
    save_model(build_model(rec), rec, md/'unet')
    write_ensemble(EnsembleRecord('soft', 0.5), md/'ensemble.json')
    mark_complete(md, ['mobilenet_v2', 'resnet34'])
    ENV['models'] = md
    ENV['mixed'] = mixed_folder(W/'mixed')

def copy_models(name:str)->Path:
    "A copy of the finished models folder to spoil"
    d = fresh(name); shutil.copytree(ENV['models'], d); return d

def png_bomb(fn, w=40000, h=40000):
    "A tiny PNG whose header declares w x h pixels (far beyond PIL's decompression-bomb limit)"
    def chunk(t, data): return struct.pack('>I', len(data)) + t + data + struct.pack('>I', zlib.crc32(t + data) & 0xffffffff)
    raw = zlib.compress(b'\0' * (w + 1) * 16)   # a few rows; the header is what a reader meets first
    Path(fn).write_bytes(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 0, 0, 0, 0)) + chunk(b'IDAT', raw) + chunk(b'IEND', b''))

def dicom_bomb(fn, rows=20000, cols=20000):
    "A deflated DICOM of a few hundred kB declaring rows x cols 16-bit pixels (written in chunks: never in memory)"
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.filewriter import write_dataset, write_file_meta_info
    from pydicom.filebase import DicomBytesIO
    meta = FileMetaDataset(); meta.MediaStorageSOPClassUID = '1.2.840.10008.5.1.4.1.1.2'
    meta.MediaStorageSOPInstanceUID = '1.2.3.4.5'; meta.TransferSyntaxUID = '1.2.840.10008.1.2.1.99'   # deflated explicit VR LE
    ds = Dataset(); ds.SOPClassUID = meta.MediaStorageSOPClassUID; ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = 'CT'; ds.SamplesPerPixel = 1; ds.PhotometricInterpretation = 'MONOCHROME2'; ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
    body = DicomBytesIO(); body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, ds)
    n = rows * cols * 2
    head = DicomBytesIO(); head.is_little_endian, head.is_implicit_VR = True, False
    write_file_meta_info(head, meta)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    with open(fn, 'wb') as f:
        f.write(b'\0' * 128 + b'DICM' + head.getvalue())
        f.write(c.compress(body.getvalue() + struct.pack('<HH2sHI', 0x7FE0, 0x0010, b'OW', 0, n)))
        zero = b'\0' * (8 << 20)
        for _ in range(n // len(zero)): f.write(c.compress(zero))
        f.write(c.compress(b'\0' * (n % len(zero)))); f.write(c.flush())

def mixed_folder(d:Path)->dict:
    "A 507-file folder as a careless user hands it over: slices, copies, broken files, other files, hidden ones, links"
    import numpy as np
    from PIL import Image
    d.mkdir()
    pngs, dcms = ENV['pngs'], ENV['dcms']
    good, bad, other = [], [], []
    for i in range(150):  # PNG slices, some in sub-folders
        f = d/('series%d' % (i % 3))/f'p{i:03d}.png'; f.parent.mkdir(exist_ok=True); shutil.copy(pngs[i % len(pngs)], f); good.append(f)
    for i in range(100):  # DICOM slices, a third without extension
        f = d/'dicom'/(f'd{i:03d}.dcm' if i % 3 else f'd{i:03d}'); f.parent.mkdir(exist_ok=True); shutil.copy(dcms[i % len(dcms)], f); good.append(f)
    for i in range(30):   # truncated DICOMs
        raw = dcms[i % len(dcms)].read_bytes(); f = d/'broken'/f't{i:02d}.dcm'; f.parent.mkdir(exist_ok=True); f.write_bytes(raw[:len(raw)//2]); bad.append(f)
    for i in range(30):   # PNGs cut after the signature, empty PNGs
        f = d/'broken'/f'c{i:02d}.png'; f.write_bytes(pngs[0].read_bytes()[:100] if i % 2 else b''); bad.append(f)
    for i in range(20):   # text named .dcm
        f = d/'broken'/f'fake{i:02d}.dcm'; f.write_text('not a dicom'); bad.append(f)
    for i in range(50):   # JPEGs
        f = d/'photos'/f'j{i:02d}.jpg'; f.parent.mkdir(exist_ok=True)
        Image.fromarray((np.random.default_rng(i).random((16, 16)) * 255).astype(np.uint8)).save(f, format='JPEG'); other.append(f)
    for i in range(60):   # notes, CSVs, spreadsheets, PDFs
        f = d/'docs'/f'n{i:02d}.{("txt", "csv", "xlsx", "pdf")[i % 4]}'; f.parent.mkdir(exist_ok=True); f.write_bytes(os.urandom(64)); other.append(f)
    for i in range(40):   # hidden files and a hidden folder
        f = (d/'.cache'/f'h{i:02d}.png') if i % 2 else (d/f'.h{i:02d}.png'); f.parent.mkdir(exist_ok=True); shutil.copy(pngs[0], f); other.append(f)
    (d/'dicom'/'DICOMDIR').write_bytes(b'\0' * 128 + b'DICM' + b'\0' * 16); other.append(d/'dicom'/'DICOMDIR')
    for i in range(13):   # broken links
        f = d/'links'/f'gone{i:02d}.png'; f.parent.mkdir(exist_ok=True); f.symlink_to(d/'nowhere'/f'{i}.png'); other.append(f)
    (d/'links'/'loop').symlink_to(d/'links'); other.append(d/'links'/'loop')
    (d/'empty_folder').mkdir()
    for i in range(12):   # zero-byte files without extension
        f = d/'docs'/f'zero{i:02d}'; f.write_bytes(b''); other.append(f)
    n = sum(1 for p in d.rglob('*') if p.is_file() or p.is_symlink())
    assert len(good) + len(bad) + len(other) == n == 507, (len(good), len(bad), len(other), n)
    return dict(dir=d, good=good, bad=bad, other=other)

def spoil_record(md:Path, sub:str, **changes)->Path:
    "Change fields of md/sub/model.json"
    j = json.loads((md/sub/'model.json').read_text()); j.update(changes); (md/sub/'model.json').write_text(json.dumps(j)); return md

# ---------------------------------------------------------------------------------------------------- predict: inputs
@case('predict/inputs', 'a mixed 507-file folder: every slice answered with its mask, every broken file an error, every other file listed as skipped')
def predict_inputs__mixed_507_file_folder():
    m = ENV['mixed']
    code, o, e, tb, out = predict_cli(m['dir'])
    t = tables(out)
    got = {str(Path(r['file'])) for r in t['rows']}
    miss = [f for f in m['good'] if str(f) not in got]
    errs = {Path(r['file']).name for r in t['errors']}
    sk = {r['file'] for r in t['skipped']}
    nb = [f.name for f in m['bad'] if f.name not in errs]
    listed = sk | got   # JPEGs may be read as slices; a hidden folder may be listed as one entry
    no = [str(f) for f in m['other'] if not ({str(f)} | {str(p) for p in f.parents}) & listed and f.name not in errs]
    ok = not tb and code == 1 and not miss and not nb and not no and not consistent(out)
    return ok, f"exit {code}; rows {len(t['rows'])} (slices {len(m['good'])}), errors {len(t['errors'])}/{len(m['bad'])}, skipped {len(t['skipped'])} of {len(m['other'])} others; " \
               f"unlisted slices {len(miss)}, unlisted broken {len(nb)}, unlisted others {len(no)} {no[:3]}; {consistent(out) or 'masks = rows'}"

@case('predict/explain', '--explain on good, odd-sized and broken slices: every answered slice called stroke gets its picture, every broken file stays one error row')
def predict_explain__good_odd_broken():
    from PIL import Image
    d = fresh('explain_in'); d.mkdir()
    for f in ENV['pngs'][:3] + ENV['dcms'][:2]: shutil.copy(f, d)
    Image.open(ENV['pngs'][3]).resize((300, 260)).save(d/'odd300x260.png')
    (d/'corrupt.png').write_bytes(ENV['pngs'][4].read_bytes()[:100])
    code, o, e, tb, out = predict_cli(d, None, None, '--explain', '--threshold', '0')   # threshold 0: every answered slice is called stroke
    t = tables(out)
    shown = sorted(p.stem for p in (out/'explain').glob('*.png')) if (out/'explain').exists() else []
    ids = sorted(r['image_id'] for r in t['rows'])
    ok = not tb and code == 1 and len(ids) == 6 and shown == ids and files_named(t['errors']) == {'corrupt.png'} and not consistent(out)
    return ok, f"exit {code}; rows {len(ids)}, explanations {len(shown)}, errors {sorted(files_named(t['errors']))}; {consistent(out) or 'masks = rows'}"

@case('predict/inputs', 'an empty folder: exit 1, says no slices found')
def predict_inputs__empty_folder():
    (d := fresh('empty')).mkdir()
    code, o, e, tb, out = predict_cli(d)
    return not tb and code == 1 and 'no PNG or DICOM slices found' in o, f'exit {code}: {o.strip()[-120:]}'

@case('predict/inputs', 'an input that does not exist: an error row, exit 1')
def predict_inputs__input_does_not_exist():
    code, o, e, tb, out = predict_cli([ENV['pngs'][0], W/'no'/'such.png'])
    t = tables(out)
    return not tb and code == 1 and len(t['rows']) == 1 and any('no such file' in r['reason'] for r in t['errors']), f"exit {code}; {t['errors']}"

def _bad_file(name, data):
    (d := fresh('bad')).mkdir(); f = d/name
    f.write_bytes(data) if isinstance(data, bytes) else data(f)
    code, o, e, tb, out = predict_cli([ENV['pngs'][0], f])
    t = tables(out)
    why = [r['reason'] for r in t['errors'] if Path(r['file']).name == name]
    ok = not tb and code == 1 and len(t['rows']) == 1 and len(why) == 1 and len(why[0]) > 10 and not consistent(out)
    return ok, f'exit {code}; {why[:1] or e.strip()[-150:] or tb[-200:]}'

for _n, _d in [('empty.png', b''), ('empty.dcm', b''), ('garbage.png', b'\x89PNG\r\n\x1a\n' + b'garbage' * 20),
               ('text.dcm', b'this is not a DICOM'), ('random.png', os.urandom(3000))]:
    case('predict/inputs', f'a broken file ({_n}): one error row naming it, the good slice answered')(lambda n=_n, d=_d: _bad_file(n, d))

@case('predict/inputs', 'a 16-bit PNG (not a windowed slice): an error row saying so')
def predict_inputs__16_bit_png_not_windowed_slice():
    import numpy as np
    from PIL import Image
    return _bad_file('deep.png', lambda f: Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)).save(f))

@case('predict/inputs', 'a DICOM truncated in its pixel data: an error row')
def predict_inputs__dicom_truncated_pixel_data():
    raw = ENV['dcms'][0].read_bytes(); return _bad_file('truncated.dcm', raw[:len(raw) * 2 // 3])

@case('predict/inputs', 'a PNG cut in the middle of its pixel data: an error row')
def predict_inputs__png_cut_middle_pixel_data():
    raw = ENV['pngs'][0].read_bytes(); return _bad_file('cut.png', raw[:len(raw) // 2])

@case('predict/inputs', 'a DICOM with no pixel data: an error row')
def predict_inputs__dicom_no_pixel_data():
    import pydicom
    def mk(f):
        ds = pydicom.dcmread(ENV['dcms'][0]); del ds.PixelData; ds.save_as(f)
    return _bad_file('nopixels.dcm', mk)

@case('predict/inputs', 'a DICOM whose Rows/Columns do not match its pixel data: an error row')
def predict_inputs__dicom_whose_rows_columns_do_not_match_pixel():
    import pydicom
    def mk(f):
        ds = pydicom.dcmread(ENV['dcms'][0]); ds.Rows = ds.Rows + 7; ds.save_as(f)
    return _bad_file('wrongsize.dcm', mk)

@case('predict/inputs', 'a PNG decompression bomb (header: 40000 x 40000): an error row, no memory blow-up')
def predict_inputs__png_decompression_bomb_header(): return _bad_file('bomb.png', png_bomb)

@case('predict/inputs', 'a deflated DICOM declaring 20000 x 20000 pixels: an error row before decoding (run with a 7 GB address-space limit)')
def predict_inputs__deflated_dicom_declaring_20000_x_20000_pixels():
    (d := fresh('dbomb')).mkdir(); f = d/'bomb.dcm'; dicom_bomb(f); shutil.copy(ENV['pngs'][0], d/'good.png')
    out = fresh('dbomb_out')
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (7 << 30, 7 << 30)); sys.argv = ['stroke-ct'] + sys.argv[1:]\n"
            "from stroke_ct.cli import main; sys.exit(main())")
    t0 = time.time()
    r = subprocess.run([sys.executable, '-c', code, 'predict', str(d), '--models', str(ENV['models']), '--out', str(out), '--workers', '0', '--threads', '1'],
                       capture_output=True, text=True, timeout=600)
    t = tables(out)
    why = [x['reason'] for x in t['errors'] if Path(x['file']).name == 'bomb.dcm']
    ok = r.returncode == 1 and 'Traceback' not in r.stderr and len(t['rows']) == 1 and why and 'Memory' not in why[0]
    return ok, f"exit {r.returncode} in {time.time() - t0:.0f} s ({f.stat().st_size >> 10} kB file); {why[:1] or r.stderr.strip()[-200:]}"

def _answered(make, name, n=1):
    "Odd but readable input: answered (a row and a mask each), exit 0"
    (d := fresh('odd')).mkdir(); make(d)
    code, o, e, tb, out = predict_cli(d)
    t = tables(out)
    ok = not tb and code == 0 and len(t['rows']) == n and not consistent(out)
    return ok, f"exit {code}; {len(t['rows'])} row(s); {[r['reason'] for r in t['errors']][:2] or consistent(out) or 'masks = rows'}"

for _name, _mk, _n in [
        ('an extensionless DICOM', lambda d: shutil.copy(ENV['dcms'][0], d/'1.2.840.113619.2.55'), 1),
        ('a DICOM named .png', lambda d: shutil.copy(ENV['dcms'][0], d/'slice.png'), 1),
        ('a PNG named .dcm', lambda d: shutil.copy(ENV['pngs'][0], d/'slice.dcm'), 1),
        ('a 300x260 PNG', lambda d: __import__('PIL.Image').Image.open(ENV['pngs'][0]).convert('L').resize((300, 260)).save(d/'odd.png'), 1),
        ('a 1x1 PNG', lambda d: __import__('PIL.Image').Image.new('L', (1, 1)).save(d/'tiny.png'), 1),
        ('an RGBA PNG', lambda d: __import__('PIL.Image').Image.open(ENV['pngs'][0]).convert('RGBA').save(d/'rgba.png'), 1),
        ('a palette PNG', lambda d: __import__('PIL.Image').Image.open(ENV['pngs'][0]).convert('P').save(d/'pal.png'), 1),
        ('a file named with spaces and Turkish letters', lambda d: shutil.copy(ENV['pngs'][0], d/'İnme hastası ğüşıöç.png'), 1),
        ('a file name starting with a dash', lambda d: shutil.copy(ENV['pngs'][0], d/'-rf.png'), 1),
        ('the same file twice through a link', lambda d: (shutil.copy(ENV['pngs'][0], d/'a.png'), (d/'b.png').symlink_to(d/'a.png')), 1),
        ('two patients whose series both hold 000001.dcm ... 000003.dcm', lambda d: [shutil.copy(ENV['dcms'][k], (d/p).mkdir(exist_ok=True) or d/p/f'{k % 3 + 1:06d}.dcm')
                                                                           for p, ks in (('p1', (0, 1, 2)), ('p2', (3, 4, 5))) for k in ks], 6),
        ('a.png and a.dcm in one folder', lambda d: (shutil.copy(ENV['pngs'][0], d/'a.png'), shutil.copy(ENV['dcms'][0], d/'a.dcm')), 2),
        ('A.png and a.png (one file on macOS)', lambda d: (shutil.copy(ENV['pngs'][0], d/'A.png'), shutil.copy(ENV['pngs'][1], d/'a.png')), 2)]:
    case('predict/inputs', f'{_name}: answered')(lambda m=_mk, nm=_name, n=_n: _answered(m, nm, n))

def _pydicom_file(name):
    from pydicom.data import get_testdata_file
    return get_testdata_file(name)

for _f in ('CT_small.dcm', 'MR_small_RLE.dcm', 'JPEG2000.dcm', 'MR_small_jpeg_ls_lossless.dcm', 'ExplVR_BigEnd.dcm', 'no_meta.dcm',
           'rtdose.dcm', 'SC_rgb.dcm', 'emri_small.dcm', 'MR_truncated.dcm', 'rtplan.dcm', 'waveform_ecg.dcm'):
    def _odd_dicom(f=_f):
        src = _pydicom_file(f)
        if src is None: return True, 'not shipped with this pydicom: not run'
        (d := fresh('pyd')).mkdir(); shutil.copy(src, d/f)
        code, o, e, tb, out = predict_cli(d)
        t = tables(out)
        why = lambda rs: len(rs) >= 1 and len(rs[0]['reason']) > 10
        ok = not tb and ((code == 0 and len(t['rows']) >= 1) or (code == 1 and (why(t['errors']) or why(t['skipped'])))) and not consistent(out)
        return ok, f"exit {code}; rows {len(t['rows'])}; {[r['reason'][:100] for r in t['errors'] + t['skipped']][:1]}"
    case('predict/inputs', f"pydicom's odd DICOM {_f}: answered, or one clear error, or set aside with the reason (not an axial CT slice)")(_odd_dicom)

@case('predict/inputs', 'file names with a tab, a newline and an escape sequence: every row on its own line')
def predict_inputs__file_names_tab_newline_escape_sequence():
    (d := fresh('names')).mkdir()
    for k, n in enumerate(('tab\there.png', 'new\nline.png', 'esc\x1b[31mred.png')): shutil.copy(ENV['pngs'][k], d/n)
    code, o, e, tb, out = predict_cli(d)
    t = tables(out)
    lines = (out/'stage1.txt').read_text(encoding='utf-8').split('\n') if (out/'stage1.txt').exists() else []
    ok = not tb and code == 0 and len(lines) == 5 and all(l.count('\t') == 1 for l in lines[:-1]) and not consistent(out)
    return ok, f"exit {code}; stage1.txt lines {len(lines) - 1}; ids {[r['image_id'] for r in t['rows']]}"

@case('predict/inputs', 'a broken link and a link loop in the input folder: listed as skipped, no hang')
def predict_inputs__broken_link_link_loop_input_folder():
    (d := fresh('links')).mkdir(); shutil.copy(ENV['pngs'][0], d/'a.png'); (d/'gone.png').symlink_to(d/'nowhere.png'); (d/'loop').symlink_to(d)
    code, o, e, tb, out = predict_cli(d)
    t = tables(out)
    return not tb and code == 0 and {Path(r['file']).name for r in t['skipped']} == {'gone.png', 'loop'}, f"exit {code}; skipped {[(Path(r['file']).name, r['reason']) for r in t['skipped']]}"

@case('predict/series', 'a DICOM series under shuffled names with a localizer, one file copied twice and one slice missing: every slice answered, the localizer set aside, the series row says why it has no volume')
def predict_series__localizer_copy_gap():
    import pydicom, pandas as pd
    from stroke_ct.data.synth_series import make_phantom_series
    src = fresh('ser_src'); make_phantom_series(src, n_series=1, n_slices=6, size=64, spacing=3.)
    (d := fresh('ser')).mkdir(); fs = sorted((src/'dicom').rglob('*.dcm'))
    for k, f in enumerate(fs[:-1]): shutil.copy(f, d/f'x{(k*7) % 10}.dcm')   # the last slice missing: a gap if it is inside
    shutil.copy(fs[0], d/'copy_of_x0.dcm')
    ds = pydicom.dcmread(fs[0]); ds.ImageType = ['ORIGINAL', 'PRIMARY', 'LOCALIZER']; ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(d/'scout.dcm')
    code, o, e, tb, out = predict_cli(d)
    t = tables(out)
    ser = pd.read_csv(out/'series.csv') if (out/'series.csv').exists() else pd.DataFrame()
    prob = str(ser.problem.iloc[0]) if len(ser) else ''
    ok = (not tb and code == 0 and len(t['rows']) == 6 and [Path(r['file']).name for r in t['skipped']] == ['scout.dcm'] and len(ser) == 1
          and 'two slices at one position' in prob and pd.isna(ser.hemorrhage_ml.iloc[0]) and not consistent(out))
    return ok, f"exit {code}; rows {len(t['rows'])}; skipped {[Path(r['file']).name for r in t['skipped']]}; series problem {prob!r}"

@case('predict/series', 'predict --dicomweb with no PACS listening: one line naming the URL, exit 2, nothing written')
def predict_series__dicomweb_unreachable():
    import socket
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]
    url, out = f'http://127.0.0.1:{port}/dicom-web', fresh('pacs_none')
    code, o, e, tb = run_cli('predict', '--dicomweb', url, '--study', '1.2.3', '--models', ENV['models'], '--out', out)
    lines = [l for l in e.strip().splitlines() if l.strip()]
    written = [p.name for p in out.rglob('*') if p.is_file()] if out.exists() else []
    return not tb and code == 2 and len(lines) == 1 and url in lines[0] and not written, f'exit {code}; stderr {lines}; written {written}'

@case('predict/inputs', 'JPEG, DICOMDIR and hidden files in the input: listed (skipped.csv or errors.csv), counted in the summary')
def predict_inputs__jpeg_dicomdir_hidden_files_input():
    (d := fresh('others')).mkdir(); shutil.copy(ENV['pngs'][0], d/'a.png')
    for f in ENV['mixed']['other'][:3] + [ENV['mixed']['dir']/'dicom'/'DICOMDIR', ENV['mixed']['dir']/'.h00.png']: shutil.copy(f, d/f.name)
    code, o, e, tb, out = predict_cli(d)
    t = tables(out)
    listed = files_named(t['skipped']) | files_named(t['errors']) | files_named(t['rows'])
    want = {p.name for p in d.iterdir()}
    return not tb and want <= listed and ('skipped' in o or 'not slices' in o), f"exit {code}; not listed: {sorted(want - listed)}; {o.strip()[-110:]}"

@case('predict/inputs', 'the output folder inside the input folder: its masks are not read back')
def predict_inputs__output_folder_inside_input_folder():
    (d := fresh('outin')).mkdir(); shutil.copy(ENV['pngs'][0], d/'a.png')
    predict_cli(d, d/'pred')
    code, o, e, tb, out = predict_cli(d, d/'pred')
    t = tables(out)
    return not tb and code == 0 and len(t['rows']) == 1 and not consistent(out), f"exit {code}; rows {len(t['rows'])}"

@case('predict/inputs', 'the output folder is the input folder: refused in one line')
def predict_inputs__output_folder_input_folder():
    (d := fresh('same')).mkdir(); shutil.copy(ENV['pngs'][0], d/'a.png')
    code, o, e, tb, out = predict_cli(d, d)
    return not tb and code == 2 and one_line(e), f'exit {code}: {e.strip()}'

@case('predict/inputs', 'an input folder inside the output folder: answered')
def predict_inputs__input_folder_inside_output_folder():
    out = fresh('outer'); (out/'in').mkdir(parents=True); shutil.copy(ENV['pngs'][0], out/'in'/'a.png')
    code, o, e, tb, out = predict_cli(out/'in', out)
    return not tb and code == 0 and len(tables(out)['rows']) == 1, f'exit {code}'

@case('predict/inputs', '--fallback 1: unreadable slices get an answer in stage1.txt, and are still errors')
def predict_inputs__fallback_answers_unreadable_slices_still_errors():
    (d := fresh('fb')).mkdir(); shutil.copy(ENV['pngs'][0], d/'a.png'); (d/'b.png').write_bytes(b'')
    code, o, e, tb, out = predict_cli(d, None, None, '--fallback', '1')
    t = tables(out)
    return not tb and code == 1 and sorted(t['txt']) == sorted([[t['rows'][0]['image_id'], str(t['rows'][0]['stroke'])], ['b', '1']]) and len(t['errors']) == 1, f"exit {code}; {t['txt']}"

# ---------------------------------------------------------------------------------------------------- predict: models
def _refused(md, *want, extra=()):
    code, o, e, tb, out = predict_cli(ENV['pngs'][:2], None, md, *extra)
    ok = not tb and code == 2 and one_line(e) and all(w in e for w in want) and not (Path(out)/'stage1.csv').exists()
    return ok, f'exit {code}: {(e.strip() or tb[-300:])[:260]}'

@case('predict/models', 'training stopped after 2 of 5 classifiers (no complete.json): refused, naming why')
def predict_models__training_stopped_after_2_5_classifiers_no_complete():
    md = copy_models('two_of_five'); (md/'complete.json').unlink(); shutil.rmtree(md/'unet')
    return _refused(md, 'no complete.json', '--allow-partial')

@case('predict/models', 'a finished run whose unet/ was lost: refused, naming the U-Net')
def predict_models__finished_run_whose_unet_lost():
    md = copy_models('nounet'); shutil.rmtree(md/'unet'); return _refused(md, 'unet missing')

@case('predict/models', 'a finished run that lost a classifier: refused, naming it')
def predict_models__finished_run_lost_classifier():
    md = copy_models('lost'); shutil.rmtree(md/'classifiers'/'resnet34'); return _refused(md, 'classifier resnet34 missing')

@case('predict/models', '--allow-partial on an unfinished folder: predicts, says which models are missing, exits 1')
def predict_models__allow_partial_unfinished_folder():
    md = copy_models('partial'); shutil.rmtree(md/'unet'); shutil.rmtree(md/'classifiers'/'resnet34')
    code, o, e, tb, out = predict_cli(ENV['pngs'][:2], None, md, '--allow-partial')
    t = tables(out)
    return not tb and code == 1 and 'PARTIAL' in o and 'unet missing' in o and 'resnet34 missing' in o and len(t['rows']) == 2, f'exit {code}: {o.strip()[-200:]}'

@case('predict/models', 'a classifier trained again after the run finished (checksum changed): refused')
def predict_models__classifier_trained_again_after_run_finished_checksum_changed():
    import torch
    from stroke_ct.modelio import load_model, save_model
    md = copy_models('retrained'); m, rec = load_model(md/'classifiers'/'resnet34')
    with torch.no_grad(): next(m.parameters()).add_(1)
    save_model(m, rec, md/'classifiers'/'resnet34')
    return _refused(md, 'classifier resnet34 changed')

@case('predict/models', 'a classifier folder that is not one of the run\'s: refused')
def predict_models__classifier_folder_not_one_run():
    md = copy_models('extra'); shutil.copytree(md/'classifiers'/'resnet34', md/'classifiers'/'resnet34_old'); return _refused(md, 'resnet34_old')

@case('predict/models', 'ensemble.json changed after the run finished: refused')
def predict_models__ensemble_json_changed_after_run_finished():
    md = copy_models('ens'); (md/'ensemble.json').write_text('{"vote": "hard", "threshold": 0.3}'); return _refused(md, 'ensemble.json changed')

@case('predict/models', 'complete.json damaged: refused')
def predict_models__complete_json_damaged():
    md = copy_models('cj'); (md/'complete.json').write_text('{"format": "x"'); return _refused(md, 'not a completeness record')

@case('predict/models', 'the models folder does not exist: one line')
def predict_models__models_folder_does_not_exist(): return _refused(W/'no'/'models', 'models folder not found')

@case('predict/models', 'the models folder is a file: one line')
def predict_models__models_folder_file():
    (f := fresh('mfile')).write_text('x'); return _refused(f)

@case('predict/models', 'a models folder with no classifiers/: one line')
def predict_models__models_folder_no_classifiers():
    md = copy_models('nocls'); shutil.rmtree(md/'classifiers'); return _refused(md)

for _what, _spoil, _want in [
        ('model.json missing', lambda md: (md/'classifiers'/'resnet34'/'model.json').unlink(), 'model.json'),
        ('model.pth missing', lambda md: (md/'classifiers'/'resnet34'/'model.pth').unlink(), 'model.pth: missing'),
        ('model.json not JSON', lambda md: (md/'classifiers'/'resnet34'/'model.json').write_text('{"kind": '), 'not valid JSON'),
        ('model.json size 0', lambda md: spoil_record(md, 'classifiers/resnet34', size=0), 'size must be an integer'),
        ('model.json size "abc"', lambda md: spoil_record(md, 'classifiers/resnet34', size='abc'), 'size must be an integer'),
        ('model.json with an unknown key', lambda md: spoil_record(md, 'classifiers/resnet34', windw='brain'), "unknown keys ['windw']"),
        ('model.json weights ../x.pth', lambda md: spoil_record(md, 'classifiers/resnet34', weights='../mobilenet_v2/model.pth'), 'weights must be a file name inside'),
        ('model.json weights /etc/passwd', lambda md: spoil_record(md, 'classifiers/resnet34', weights='/etc/passwd'), 'weights must be a file name inside'),
        ('model.json unknown arch', lambda md: spoil_record(md, 'classifiers/resnet34', arch='alexnet'), 'unknown classifier architecture'),
        ('model.json NaN statistics', lambda md: spoil_record(md, 'classifiers/resnet34', stats=[[0.5] * 3, [float('nan')] * 3]), 'stats must be'),
        ('model.json unknown window', lambda md: spoil_record(md, 'classifiers/resnet34', window='lung'), 'window must be one of'),
        ('model.json classes without stroke', lambda md: spoil_record(md, 'classifiers/resnet34', classes=['a', 'b']), "have no 'stroke'"),
        ('weights changed (checksum)', lambda md: (md/'classifiers'/'resnet34'/'model.pth').write_bytes((md/'classifiers'/'resnet34'/'model.pth').read_bytes()[:-8] + b'12345678'), 'checksum differs'),
        ('weights of another architecture', lambda md: (shutil.copy(md/'classifiers'/'mobilenet_v2'/'model.pth', md/'classifiers'/'resnet34'/'model.pth'),
                                                        spoil_record(md, 'classifiers/resnet34', sha256=__import__('stroke_ct.core').core.file_hash(md/'classifiers'/'resnet34'/'model.pth'))), 'does not fit'),
        ('weights a link out of the model folder', lambda md: ((md/'classifiers'/'resnet34'/'model.pth').unlink(), (md/'classifiers'/'resnet34'/'model.pth').symlink_to(ENV['models']/'classifiers'/'resnet34'/'model.pth')), 'outside the model folder'),
        ('a U-Net in the classifiers folder', lambda md: (shutil.rmtree(md/'classifiers'/'resnet34'), shutil.copytree(md/'unet', md/'classifiers'/'resnet34')), 'a unet in the classifiers folder'),
        ('ensemble.json not JSON', lambda md: (md/'ensemble.json').write_text('{"vote": "hard"'), 'not valid JSON'),
        ('ensemble.json naming other models', lambda md: (md/'ensemble.json').write_text('{"vote": "weighted", "weights": {"x": 1}}'), 'weights name'),
        ('ensemble.json threshold 2', lambda md: (md/'ensemble.json').write_text('{"vote": "hard", "threshold": 2}'), 'threshold must be'),
        ('ensemble.json vote "median"', lambda md: (md/'ensemble.json').write_text('{"vote": "median"}'), "unknown vote 'median'"),
        ('ensemble.json with an unknown key', lambda md: (md/'ensemble.json').write_text('{"vote": "hard", "colour": 1}'), "unknown keys ['colour']")]:
    def _spoiled(spoil=_spoil, want=_want, what=_what):
        from stroke_ct.runlayout import mark_complete
        md = copy_models('spoil'); spoil(md)
        return _refused(md, want, extra=('--allow-partial',))   # past the completeness check: the file itself must be refused
    case('predict/models', f'{_what}: refused in one line naming the file and the field')(_spoiled)

class _Evil:
    def __reduce__(self): return (os.system, (f'touch {W}/PWNED',))

def _pickled(write):
    md = copy_models('pickle'); f = md/'classifiers'/'resnet34'/'model.pth'
    (W/'PWNED').unlink(missing_ok=True); write(f)
    spoil_record(md, 'classifiers/resnet34', sha256=__import__('stroke_ct.core').core.file_hash(f))
    code, o, e, tb, out = predict_cli(ENV['pngs'][:1], None, md, '--allow-partial')
    ran = (W/'PWNED').exists()
    ok = not ran and not tb and code == 2 and one_line(e) and ('run code' in e or 'unreadable weights file' in e) and 'weights_only=False' not in e
    return ok, f"code {'RAN' if ran else 'not run'}; exit {code}: {e.strip()[:220]}"

for _what, _write in [('a state dict holding an object that runs a command', lambda f: __import__('torch').save({'x': _Evil()}, f)),
                      ('the same in torch\'s legacy format', lambda f: __import__('torch').save({'x': _Evil()}, f, _use_new_zipfile_serialization=False)),
                      ('a plain pickle', lambda f: f.write_bytes(pickle.dumps(_Evil()))),
                      ('a whole pickled nn.Module', lambda f: __import__('torch').save(__import__('torch').nn.Linear(2, 2), f))]:
    case('predict/models', f'pickle attack, {_what}: not loaded, nothing run, the refusal says why (no advice to turn the safety off)')(lambda w=_write: _pickled(w))

def _nan_model(sub, value):
    import torch
    from stroke_ct.modelio import load_model, save_model
    from stroke_ct.runlayout import mark_complete
    md = copy_models('nan'); m, rec = load_model(md/sub)
    with torch.no_grad(): list(m.parameters())[-1].fill_(value)
    save_model(m, rec, md/sub); mark_complete(md, ['mobilenet_v2', 'resnet34'])
    return md

@case('predict/models', 'a classifier that outputs NaN: every slice an error naming the model, no silent abstention, exit 1')
def predict_models__classifier_outputs_nan():
    code, o, e, tb, out = predict_cli(ENV['pngs'][:2], None, _nan_model('classifiers/resnet34', float('nan')))
    t = tables(out)
    return not tb and code == 1 and len(t['errors']) == 2 and all('resnet34' in r['reason'] and 'NaN' in r['reason'] for r in t['errors']), f"exit {code}; {[r['reason'][:90] for r in t['errors']][:1]}"

@case('predict/models', 'a classifier that outputs inf: errors naming the model, exit 1')
def predict_models__classifier_outputs_inf():
    code, o, e, tb, out = predict_cli(ENV['pngs'][:2], None, _nan_model('classifiers/mobilenet_v2', float('inf')))
    t = tables(out)
    return not tb and code == 1 and len(t['errors']) == 2 and all('mobilenet_v2' in r['reason'] for r in t['errors']), f"exit {code}; {[r['reason'][:90] for r in t['errors']][:1]}"

@case('predict/models', 'a U-Net that outputs NaN: errors naming the U-Net (masks left black), exit 1')
def predict_models__u_net_outputs_nan():
    code, o, e, tb, out = predict_cli(ENV['pngs'][:2], None, _nan_model('unet', float('nan')), '--segment-all')
    t = tables(out)
    return not tb and code == 1 and len(t['errors']) == 2 and all('U-Net' in r['reason'] for r in t['errors']), f"exit {code}; {[r['reason'][:90] for r in t['errors']][:1]}"

# ---------------------------------------------------------------------------------------------------- predict: the output folder
@case('predict/out', '--out is a file: one line before any work, exit 2')
def predict_out__out_is_a_file_refused_before_work():
    (f := fresh('ofile')).write_text('x')
    t0 = time.time(); code, o, e, tb, out = predict_cli(ENV['mixed']['dir'], f)
    return not tb and code == 2 and one_line(e) and 'not a folder' in e and time.time() - t0 < 5, f'exit {code} after {time.time() - t0:.1f} s: {e.strip()}'

@case('predict/out', '--out below a file: one line, exit 2')
def predict_out__out_below_a_file_refused():
    (f := fresh('ofile')).write_text('x')
    code, o, e, tb, out = predict_cli(ENV['pngs'][:1], f/'sub')
    return not tb and code == 2 and one_line(e), f'exit {code}: {e.strip()}'

def _as_nobody(fn):
    "Run fn() in a forked child as an unprivileged user; what it returns"
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r); os.setgid(65534); os.setuid(65534); res = fn()
        except BaseException as e: res = (None, '', '', repr(e))
        os.write(w, json.dumps(res, default=str).encode()); os._exit(0)
    os.close(w); data = b''
    while (b := os.read(r, 1 << 16)): data += b
    os.waitpid(pid, 0); return json.loads(data)

@case('predict/out', '--out read-only (as an unprivileged user): one line before any work, exit 2')
def predict_out__out_read_only_unprivileged_user():
    if os.getuid() != 0: ro = fresh('ro'); ro.mkdir(); os.chmod(ro, 0o555); code, o, e, tb, _ = predict_cli(ENV['pngs'][:1], ro)
    else:
        ro = fresh('ro'); ro.mkdir(); os.chmod(ro, 0o555); os.chmod(W, 0o755)
        code, o, e, tb = _as_nobody(lambda: list(predict_cli(ENV['pngs'][:1], ro))[:4])
    return not tb and code == 2 and one_line(e) and 'cannot write' in e, f'exit {code}: {(e or tb).strip()[:200]}'

@contextlib.contextmanager
def small_disk(size='2m'):
    "A tmpfs of `size` mounted under the scratch folder (None when this process may not mount)"
    d = fresh('disk'); d.mkdir()
    r = subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={size}', 'tmpfs', str(d)], capture_output=True)
    if r.returncode: yield None; return
    try: yield d
    finally: subprocess.run(['umount', '-l', str(d)], capture_output=True)

@case('predict/out', '--out on a nearly full disk (a real 2 MB tmpfs, 507-file folder): one line before any inference, exit 2')
def predict_out__out_nearly_full_disk_real_2_mb_tmpfs():
    with small_disk('2m') as disk:
        if disk is None: return True, 'cannot mount a tmpfs here: not run'
        t0 = time.time(); code, o, e, tb, out = predict_cli(ENV['mixed']['dir'], disk/'pred')
        return not tb and code == 2 and one_line(e) and 'no space left' in e, f'exit {code} after {time.time() - t0:.1f} s: {e.strip()[:200]}'

@case('predict/out', 'a disk that fills during the run (a real tmpfs, 40 slices): every slice without a mask is an error, exit non-zero, nothing half-written')
def predict_out__disk_fills_during_run_real_tmpfs_40_slices():
    with small_disk('2m') as disk:
        if disk is None: return True, 'cannot mount a tmpfs here: not run'
        (d := fresh('forty')).mkdir()
        for k in range(40): shutil.copy(ENV['pngs'][k % len(ENV['pngs'])], d/f'{k:02d}.png')
        import stroke_ct.predict as P
        (disk/'filler').write_bytes(b'\0' * (shutil.disk_usage(disk).free - (40 << 10)))   # room for a few masks, not for 40
        check = P.check_out; P.check_out = lambda out, need=0: check(out)   # let the run start, so the disk fills while it writes
        try: code, o, e, tb, out = predict_cli(d, disk/'pred', None, '--segment-all')
        finally: P.check_out = check
        t = tables(disk/'pred')
        ids, masks = {r['image_id'] for r in t['rows']}, set(t['masks'])
        unlisted = {r['image_id'] for r in t['rows'] if r['image_id'] not in masks and r['file'] not in {x['file'] for x in t['errors']}}
        ok = not tb and code in (1, 2) and masks <= ids and not unlisted and not t['partial']
        return ok, f"exit {code}; rows {len(ids)} masks {len(masks)}, rows without a mask and no error: {len(unlisted)}; {(e.strip() or o.strip())[-160:]}"

@case('predict/out', 'a second predict into the same --out while the first runs: fails at once, the first finishes whole')
def predict_out__second_predict_same_out_while_first_runs():
    out = fresh('busy')
    p = subprocess.Popen([sys.executable, '-m', 'stroke_ct', 'predict', str(ENV['mixed']['dir']), '--models', str(ENV['models']), '--out', str(out), '--workers', '0', '--threads', '1'],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while not (out/'.partial').exists() and p.poll() is None and time.time() - t0 < 120: time.sleep(0.2)
    t1 = time.time(); code, o, e, tb, _ = predict_cli(ENV['pngs'][:2], out); dt = time.time() - t1
    p.wait(600)
    ok = not tb and code == 2 and 'in use' in e and dt < 10 and p.returncode == 1 and not consistent(out)
    return ok, f'second: exit {code} after {dt:.1f} s ({e.strip()[:100]}); first: exit {p.returncode}; {consistent(out) or "masks = rows"}'

@case('predict/out', 'two predicts one after the other into one --out: only the second run\'s masks and rows, the first\'s moved to previous/')
def predict_out__two_predicts_one_after_other_one_out():
    out = fresh('twice')
    predict_cli(ENV['mixed']['dir'], out)
    code, o, e, tb, _ = predict_cli(ENV['pngs'][:3], out)
    t = tables(out)
    return not tb and code == 0 and len(t['rows']) == 3 and not consistent(out) and (out/'previous'/'stage1.csv').exists(), \
           f"exit {code}; rows {len(t['rows'])}, masks {len(t['masks'])}; {o.strip()[-80:]}"

@case('predict/out', 'an --out holding masks/ that predict did not write: refused, nothing moved')
def predict_out__out_holding_masks_predict_did_not_write():
    out = fresh('foreign'); (out/'masks').mkdir(parents=True); shutil.copy(ENV['pngs'][0], out/'masks'/'truth.png')
    code, o, e, tb, _ = predict_cli(ENV['pngs'][:1], out)
    return not tb and code == 2 and one_line(e) and (out/'masks'/'truth.png').exists(), f'exit {code}: {e.strip()[:160]}'

def _killed(sig, delays):
    "Earlier outputs in --out, then predict runs killed with `sig` after each delay: the folder always holds one whole run"
    out = fresh('killed')
    predict_cli(ENV['pngs'][:3], out)
    seen = []
    for t in delays:
        before = state(out)
        p = subprocess.Popen([sys.executable, '-m', 'stroke_ct', 'predict', str(ENV['mixed']['dir']), '--models', str(ENV['models']), '--out', str(out),
                              '--workers', '0', '--threads', '1'], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(t); p.send_signal(sig); _, err = p.communicate(timeout=120)
        after, t_ = state(out), tables(out)
        whole = after == before or (not consistent(out) and (out/'predict.json').exists() and len(t_['rows']) >= len(ENV['mixed']['good']))
        seen.append((t, p.returncode, whole, 'Traceback' in err))
    code, o, e, tb, _ = predict_cli(ENV['pngs'][:2], out)   # and the folder is usable afterwards
    ok = all(w and not trace for _, _, w, trace in seen) and code == 0 and not consistent(out) and not tables(out)['partial']
    return ok, f'{[(t, rc, "whole" if w else "PARTIAL") for t, rc, w, _ in seen]}; then exit {code}'

@case('predict/out', 'kill -9 seven times during predict (at 1-14 s): --out always holds one whole run, and works after')
def predict_out__kill_9_seven_times_during_predict_1_14(): return _killed(signal.SIGKILL, (1, 3, 5, 6, 7, 9, 14))

def ctrl_c_able(args, **kw)->subprocess.Popen:
    "`python -m stroke_ct ARGS` as a process that Ctrl-C reaches: SIGINT back to its default, since a shell starts background jobs (CI in the background, nohup) with SIGINT ignored, and Python then never raises KeyboardInterrupt"
    return subprocess.Popen([sys.executable, '-m', 'stroke_ct', *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **kw)

@case('predict/out', 'Ctrl-C during predict: exit 130, "interrupted", --out holds the earlier run whole')
def predict_out__ctrl_c_during_predict():
    out = fresh('ctrlc'); predict_cli(ENV['pngs'][:3], out); before = state(out)
    p = ctrl_c_able(['predict', ENV['mixed']['dir'], '--models', ENV['models'], '--out', out, '--workers', '0', '--threads', '1', '--bs', '1'])
    t0 = time.time()   # batches of one slice: the run lasts long enough for the signal to land mid-run
    while not (out/'.partial').exists() and p.poll() is None and time.time() - t0 < 120: time.sleep(0.05)
    time.sleep(0.05); p.send_signal(signal.SIGINT); _, err = p.communicate(timeout=120)   # at once: with fast models the run can end within a second
    return p.returncode == 130 and 'interrupted' in err and state(out) == before and not (out/'.partial').exists(), f'exit {p.returncode}: {err.strip()[-100:]}'

# ---------------------------------------------------------------------------------------------------- other commands: output folders
def _out_is_file(*args):
    (f := fresh('afile')).write_text('x')
    args = [f if a == 'OUT' else f/'m.csv' if a == 'OUT/m.csv' else a for a in args]
    t0 = time.time(); code, o, e, tb = run_cli(*args)
    return not tb and code == 2 and one_line(e) and str(f) in e and time.time() - t0 < 10, f'exit {code} after {time.time() - t0:.1f} s: {(e or tb).strip()[:160]}'

for _args in (('synth', 'OUT'), ('dicom2png', 'DCM', '--out', 'OUT'), ('manifest', 'SYN', '--out', 'OUT/m.csv'), ('demo', 'OUT', '--quick'),
              ('train', 'SYN', 'OUT', '--preset', 'quick')):
    case('commands/out', f"{_args[0]}: an output path that is a file, one line before any work")(
        lambda a=_args: _out_is_file(*[ENV['dcms'][0] if x == 'DCM' else ENV['synth'] if x == 'SYN' else x for x in a]))

@case('commands/out', 'dicom2png into a read-only folder (as an unprivileged user): one line, exit 2')
def commands_out__dicom2png_read_only_folder_unprivileged_user():
    ro = fresh('ro2'); ro.mkdir(); os.chmod(ro, 0o555); os.chmod(W, 0o755)
    f = lambda: list(run_cli('dicom2png', ENV['dcms'][0], '--out', ro))
    code, o, e, tb = _as_nobody(f) if os.getuid() == 0 else f()
    return not tb and code == 2 and one_line(e), f'exit {code}: {(e or tb).strip()[:160]}'

@case('commands/out', 'synth onto a real full disk (tmpfs): one line before writing, exit 2')
def commands_out__synth_onto_real_full_disk_tmpfs():
    with small_disk('1m') as disk:
        if disk is None: return True, 'cannot mount a tmpfs here: not run'
        code, o, e, tb = run_cli('synth', disk/'s', '--n-normal', 40)
        return not tb and code == 2 and one_line(e) and 'no space left' in e, f'exit {code}: {(e or tb).strip()[:160]}'

@case('commands/out', 'a full disk while a model is saved (torch.save on a real 64 MB tmpfs): "PATH: no space left on the device", nothing half-written')
def commands_out__full_disk_while_model_saved_torch_save_real():
    import torch
    from stroke_ct.modelio import ModelRecord, build_model, save_model
    with small_disk('64m') as disk:
        if disk is None: return True, 'cannot mount a tmpfs here: not run'
        (disk/'filler').write_bytes(b'\0' * (56 << 20))
        rec = ModelRecord('classifier', 'resnet34', 32, ['normal', 'stroke'])
        try: save_model(build_model(rec), rec, disk/'m'); return False, 'saved: the disk was not full'
        except OSError as e:
            left = sorted(p.name for p in (disk/'m').iterdir())
            return 'no space left on the device' in str(e) and str(disk/'m'/'model.pth') in str(e) and left == [], f'{e}; left {left}'
        except Exception as e: return False, f'{type(e).__name__}: {str(e)[:200]}'

@case('commands/out', 'train when ImageNet weights cannot be fetched: one line saying what to do')
def commands_out__train_imagenet_weights_cannot_fetched():
    import torch
    from stroke_ct.archs import fetch_pretrained
    old_dir, old_dl = torch.hub.get_dir(), torch.hub.download_url_to_file
    def no_net(*a, **k): raise OSError('[Errno -3] Temporary failure in name resolution')
    torch.hub.set_dir(str(fresh('hub'))); torch.hub.download_url_to_file = no_net
    try: code, o, e, tb = run_cli('train', ENV['synth'], fresh('tr'), '--preset', 'teknofest', '--archs', 'resnet34', '--stage', 'classifiers', '--epochs', 1)
    finally: torch.hub.set_dir(old_dir); torch.hub.download_url_to_file = old_dl
    return not tb and code == 2 and one_line(e) and 'no-pretrained' in e, f'exit {code}: {(e or tb).strip()[-200:]}'

# ---------------------------------------------------------------------------------------------------- arguments
for _args, _opt in [(('train', 'SYN', 'OUT', '--epochs', '-1'), '--epochs'), (('train', 'SYN', 'OUT', '--epochs', '0'), '--epochs'),
                    (('synth', 'OUT', '--n-normal', '-5'), '--n-normal'), (('synth', 'OUT', '--n-ischemic', 'many'), '--n-ischemic'),
                    (('synth', 'OUT', '--ischemia-contrast', 'nan', 'nan'), '--ischemia-contrast'), (('synth', 'OUT', '--ischemia-contrast', 'inf', '3'), '--ischemia-contrast'),
                    (('predict', 'X', '--models', 'M', '--out', 'OUT', '--threshold', '2'), '--threshold'),
                    (('predict', 'X', '--models', 'M', '--out', 'OUT', '--threshold', 'nan'), '--threshold'),
                    (('predict', 'X', '--models', 'M', '--out', 'OUT', '--bs', '0'), '--bs'), (('predict', 'X', '--models', 'M', '--out', 'OUT', '--workers', '-1'), '--workers'),
                    (('predict', 'X', '--models', 'M', '--out', 'OUT', '--threads', '0'), '--threads'), (('predict', 'X', '--models', 'M', '--out', 'OUT', '--vote', 'median'), '--vote'),
                    (('predict', '--models', 'M', '--out', 'OUT'), 'inputs'), (('manifest', 'SYN', '--n-seg-test', '-1'), '--n-seg-test'),
                    (('dicom2png', 'X', '--out', 'OUT', '--window', 'lung'), '--window')]:
    def _arg(a=_args, opt=_opt):
        out = fresh('never')
        code, o, e, tb = run_cli(*[ENV['synth'] if x == 'SYN' else out if x == 'OUT' else x for x in a])
        return not tb and code == 2 and opt in e and not out.exists(), f'exit {code}: {e.strip().splitlines()[-1][:150] if e.strip() else tb[-150:]}'
    case('arguments', f"{' '.join(_args)}: a usage error naming {_opt}, nothing written")(_arg)

for _args, _want in [(('synth', 'OUT', '--ischemia-contrast', '25', '8'), 'MIN_HU <= MAX_HU'), (('train', 'SYN', 'OUT', '--preset', 'quick', '--set', 'unet.epochs=-1'), 'unet'),
                     (('train', 'SYN', 'OUT', '--preset', 'quick', '--set', 'unet.epoch=5'), "unknown setting 'unet.epoch'"),
                     (('train', 'SYN', 'OUT', '--preset', 'quick', '--archs', 'alexnet'), 'alexnet'), (('train', 'SYN', 'OUT', '--config', 'NOFILE'), 'no such file')]:
    def _val(a=_args, want=_want):
        code, o, e, tb = run_cli(*[ENV['synth'] if x == 'SYN' else fresh('o') if x == 'OUT' else W/'none.json' if x == 'NOFILE' else x for x in a])
        return not tb and code == 2 and one_line(e) and want in e, f'exit {code}: {(e or tb).strip()[:160]}'
    case('arguments', f"{' '.join(_args)}: one line naming the setting, exit 2")(_val)

# ---------------------------------------------------------------------------------------------------- data commands
def _release(name='release'):
    "A public-release copy (PNG + OVERLAY, no MASK) of the phantoms' hemorrhage slices"
    rel = fresh(name)/'Kanama Veri Seti'; src = ENV['synth']/'TRAINING'/'KANAMA'
    for sub in ('PNG', 'OVERLAY'): shutil.copytree(src/sub, rel/sub)
    return rel.parent

@case('data', 'check-data on a set whose MASK cannot be decoded (noise): reported, not "usable"')
def data__check_data_set_whose_mask_cannot_decoded_noise():
    import numpy as np
    from PIL import Image
    root = fresh('chk'); shutil.copytree(ENV['synth'], root)
    m = sorted(root.rglob('MASK/*.png'))[0]
    Image.fromarray((np.random.default_rng(0).random((*Image.open(m).size[::-1], 3)) * 255).astype(np.uint8)).save(m)
    code, o, e, tb = run_cli('check-data', root)
    return not tb and (m.name in o + e) and (code != 0 or 'undecodable' in o.lower() or 'cannot' in o.lower()), f'exit {code}; mask named: {m.name in o + e}'

@case('data', 'check-data on an empty folder: non-zero')
def data__check_data_empty_folder():
    (d := fresh('nodata')).mkdir(); code, o, e, tb = run_cli('check-data', d)
    return not tb and code not in (0, None), f'exit {code}'

@case('data', 'masks-from-overlays with a mistyped root: one line, exit non-zero, nothing made')
def data__masks_overlays_mistyped_root():
    root = fresh('typo')
    code, o, e, tb = run_cli('masks-from-overlays', root)
    return not tb and code not in (0, None) and not root.exists(), f'exit {code}; made: {root.exists()}; {(e or o).strip()[:120]}'

@case('data', 'masks-from-overlays: the error file of a failed run is removed by a clean rerun (exit 0)')
def data__masks_overlays_clean_rerun_removes_error_file():
    root = _release()
    ov = sorted(root.rglob('OVERLAY/*.png'))[0]; keep = ov.read_bytes(); ov.write_bytes(b'broken')
    run_cli('masks-from-overlays', root)
    ov.write_bytes(keep)
    code, o, e, tb = run_cli('masks-from-overlays', root, '--overwrite')
    if code == 2 and '--overwrite' in e: code, o, e, tb = run_cli('masks-from-overlays', root)
    return not tb and code == 0 and not (root/'mask_errors.csv').exists(), f'exit {code}; mask_errors.csv left: {(root/"mask_errors.csv").exists()}'

@case('data', 'masks-from-overlays --overwrite rebuilds existing masks')
def data__masks_overlays_overwrite_rebuilds_existing_masks():
    root = _release(); run_cli('masks-from-overlays', root)
    m = sorted(root.rglob('MASK/*.png'))[0]; m.write_bytes(b'stale')
    code, o, e, tb = run_cli('masks-from-overlays', root, '--overwrite')
    return not tb and code == 0 and m.read_bytes() != b'stale', f'exit {code}: {(e or o).strip()[-120:]}'

@case('data', 'masks-from-overlays: a stroke overlay with no lesion drawn gives a warning, not a silent all-black mask')
def data__masks_overlays_stroke_overlay_without_lesion_warns():
    root = _release(); ov = sorted(root.rglob('OVERLAY/*.png'))[0]
    shutil.copy(ov.parent.parent/'PNG'/ov.name, ov)
    code, o, e, tb = run_cli('masks-from-overlays', root)
    listed = ov.stem in o + e or any(ov.stem in f.read_text(errors='replace') for f in root.glob('*.csv'))
    said = ov.stem in o + e or 'no lesion' in o + e
    return not tb and listed and said, f'exit {code}; named: {listed}; {(o + e).strip()[-150:]}'

@case('data', 'dicom2png over a folder with JPEG and text files: the skipped files listed')
def data__dicom2png_over_folder_jpeg_text_files():
    (d := fresh('d2p')).mkdir(); shutil.copy(ENV['dcms'][0], d/'a.dcm')
    for f in ENV['mixed']['other'][:2] + [ENV['mixed']['dir']/'photos'/'j00.jpg']: shutil.copy(f, d/f.name)
    out = fresh('d2p_out'); code, o, e, tb = run_cli('dicom2png', d, '--out', out)
    listed = set()
    for n in ('skipped.csv', 'errors.csv'):
        if (out/n).exists(): listed |= {Path(l.split(',')[0]).name for l in (out/n).read_text().splitlines()[1:]}
    want = {p.name for p in d.iterdir()} - {'a.dcm'}
    return not tb and want <= listed, f'exit {code}; not listed {sorted(want - listed)}'

@case('data', 'dicom2png on a deflated DICOM declaring 20000 x 20000 pixels: an error row before decoding (7 GB address-space limit)')
def data__dicom2png_deflated_dicom_declaring_20000_x_20000_pixels():
    (d := fresh('d2pb')).mkdir(); dicom_bomb(d/'bomb.dcm'); out = fresh('d2pb_out')
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (7 << 30, 7 << 30)); sys.argv = ['stroke-ct'] + sys.argv[1:]\n"
            "from stroke_ct.cli import main; sys.exit(main())")
    r = subprocess.run([sys.executable, '-c', code, 'dicom2png', str(d/'bomb.dcm'), '--out', str(out)], capture_output=True, text=True, timeout=600)
    err = (out/'errors.csv').read_text() if (out/'errors.csv').exists() else ''
    return r.returncode == 1 and 'bomb.dcm' in err and 'Memory' not in err and 'Traceback' not in r.stderr, f'exit {r.returncode}; {err.strip()[-160:] or r.stderr.strip()[-160:]}'

# ---------------------------------------------------------------------------------------------------- runs: re-runs, resumes, evaluate, report, configuration
def quick_run()->Path:
    "A finished quick demo run (made once, about 2 minutes on 2 cores); spoil copies of it, never the run itself"
    if 'run' not in ENV:
        code, o, e, tb = run_cli('demo', W/'run', '--quick')
        if code != 0: raise RuntimeError(f'the quick demo failed: {(e or tb)[-300:]}')
        ENV['run'] = W/'run'
    return ENV['run']

def copy_run(name:str)->Path:
    "A copy of the quick run (its config.json still points at the original's data folder)"
    d = fresh(name); shutil.copytree(quick_run(), d, ignore=shutil.ignore_patterns('data', 'report.html')); return d

def mtimes(folder:Path, pattern='model.pth')->dict: return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns for p in folder.rglob(pattern)}

def train_cli(run:Path, *extra): return run_cli('train', quick_run()/'data', run, *extra)

@case('train/resume', 'train again on a run stopped mid-training (no flag): finished classifiers kept as they are, the missing one trained, nothing else')
def train_resume__train_again_run_stopped_mid_training_no_flag():
    r = copy_run('stopped'); before = mtimes(r)
    shutil.rmtree(r/'models'/'classifiers'/'vgg19_bn'); (r/'models'/'complete.json').unlink()
    code, o, e, tb = train_cli(r, '--stage', 'classifiers', '--stage', 'vote')
    after = mtimes(r); kept = [k for k in before if 'vgg19_bn' not in k and after.get(k) == before[k]]
    return not tb and code == 0 and len(kept) == len(before) - 1 and 'models/classifiers/vgg19_bn/model.pth' in after and 'finished earlier, skipped' in o, \
        f'exit {code}; {len(kept)} of {len(before) - 1} other models untouched; vgg19_bn trained: {"models/classifiers/vgg19_bn/model.pth" in after}'

@case('train/resume', '--overwrite --epochs 2: every classifier retrained with 2 epochs, config.json and the records agree, the log says so')
def train_resume__overwrite_retrains_every_classifier_with_new_epochs():
    r = copy_run('over')
    code, o, e, tb = train_cli(r, '--stage', 'classifiers', '--overwrite', '--epochs', 2)
    eps = {a: json.loads((r/'models'/'classifiers'/a/'model.json').read_text())['train']['epochs'] for a in ('resnet34', 'mobilenet_v2')}
    cfg = json.loads((r/'config.json').read_text())['classifiers']['epochs']
    return not tb and code == 0 and set(eps.values()) == {2} and cfg == 2 and 'starting over' in o, f'exit {code}; record epochs {eps}, config {cfg}'

@case('train/resume', 'a damaged last.pth (empty, truncated, best.pth copied over it): one line naming it, exit 2, the checkpoint kept')
def train_resume__damaged_last_pth_empty_truncated_best_pth_copied():
    seen = []
    for what in ('empty', 'truncated', 'best'):
        r = copy_run(f'ck_{what}'); shutil.rmtree(r/'models'/'classifiers'/'resnet34')
        ck = r/'checkpoints'/'classifiers'/'resnet34'; ck.mkdir(parents=True)
        import torch; torch.save({'w': torch.zeros(3)}, ck/'best.pth')
        (ck/'last.pth').write_bytes({'empty': b'', 'truncated': (ck/'best.pth').read_bytes()[:200], 'best': (ck/'best.pth').read_bytes()}[what])
        code, o, e, tb = train_cli(r, '--stage', 'classifiers')
        seen.append((what, code, not tb and one_line(e) and 'damaged checkpoint' in e and 'last.pth' in e and (ck/'last.pth').exists()))
    return all(ok and c == 2 for _, c, ok in seen), '; '.join(f'{w}: exit {c}, {"one line" if ok else "NOT one line"}' for w, c, ok in seen)

@case('train/resume', 'stage vote with fewer --archs than the run trained (--overwrite): no complete.json that predict would reject, the log says why')
def train_resume__stage_vote_fewer_archs_run_trained_overwrite():
    r = copy_run('fewer')
    code, o, e, tb = train_cli(r, '--archs', 'resnet34', 'mobilenet_v2', '--stage', 'vote', '--overwrite')
    return not tb and not (r/'models'/'complete.json').exists() and 'not in the configuration' in o, \
        f"exit {code}; complete.json {'written' if (r/'models'/'complete.json').exists() else 'not written'}; {o.strip().splitlines()[-1][:140] if o.strip() else ''}"

@case('train/resume', 're-vote with metrics/probs.csv at 0 bytes: one line naming the file, exit 2, models still complete')
def train_resume__re_vote_metrics_probs_csv_0_bytes():
    r = copy_run('probs0'); (r/'metrics'/'probs.csv').write_text('')
    code, o, e, tb = train_cli(r, '--stage', 'vote')
    return not tb and code == 2 and one_line(e) and 'probs.csv' in e and (r/'models'/'complete.json').exists(), f'exit {code}: {(e or tb).strip()[:160]}'

@case('train/resume', "pipeline.train(data) without out: the run goes to runs_dir()/<config name>")
def train_resume__pipeline_train_data_without_out():
    from stroke_ct.pipeline import train
    from stroke_ct.run import RunConfig
    old = os.environ.get('STROKE_CT_RUNS'); os.environ['STROKE_CT_RUNS'] = str(fresh('runs'))
    try:
        with contextlib.redirect_stdout(io.StringIO()): train(quick_run()/'data', config=RunConfig.preset('quick'), stages=[])
        ok = (Path(os.environ['STROKE_CT_RUNS'])/'quick'/'config.json').exists()
    finally:
        if old is None: os.environ.pop('STROKE_CT_RUNS')
        else: os.environ['STROKE_CT_RUNS'] = old
    return ok, 'config.json written under runs_dir()/quick' if ok else 'no run folder under runs_dir()'

@case('train/resume', '--manifest whose images are not in DATA: one line naming the manifest, exit 2')
def train_resume__manifest_whose_images_not_data():
    import pandas as pd
    m = pd.read_csv(quick_run()/'data'/'data_manifest.csv', dtype=str); m['image_id'] = 'x' + m.image_id
    f = fresh('other.csv'); m.to_csv(f, index=False)
    code, o, e, tb = train_cli(fresh('man'), '--preset', 'quick', '--manifest', f)
    return not tb and code == 2 and one_line(e) and 'none of its' in e, f'exit {code}: {(e or tb).strip()[:160]}'

@case('train/resume', 'two trainings into one run folder: the second refused in one line while the first holds it')
def train_resume__two_trainings_one_run_folder():
    from stroke_ct.core import folder_lock
    r = copy_run('locked')
    with folder_lock(r): code, o, e, tb = train_cli(r, '--stage', 'vote')
    return not tb and code == 2 and one_line(e) and 'in use by another stroke-ct process' in e, f'exit {code}: {(e or tb).strip()[:160]}'

@case('train/data', 'a class-folder set with one class only: refused before training, naming the missing class, exit 2')
def train_data__class_folder_set_one_class_only():
    (d := fresh('oneclass')/'Normal').mkdir(parents=True)
    for f in ENV['pngs'][:6]: shutil.copy(f, d/f.name)
    code, o, e, tb = run_cli('train', d.parent, fresh('oneclass_run'), '--preset', 'quick', '--no-pretrained')
    return not tb and code == 2 and one_line(e) and 'no stroke slice' in e, f'exit {code}: {(e or tb).strip()[:160]}'

@case('evaluate', '--out is the run folder: refused before any work, its report.md and figures untouched, exit 2')
def evaluate__out_run_folder():
    r = copy_run('evrun'); before = state(r)
    code, o, e, tb = run_cli('evaluate', quick_run()/'data', '--models', r/'models', '--out', r, '--n-boot', 20)
    return not tb and code == 2 and one_line(e) and state(r) == before, f'exit {code}: {(e or tb).strip()[:160]}'

@case('evaluate', 'a second evaluate into the same --out: the first moved to previous/, none of its tables left beside the new ones')
def evaluate__second_evaluate_same_out():
    out = fresh('ev2')
    for _ in range(2): code, o, e, tb = run_cli('evaluate', quick_run()/'data', '--models', quick_run()/'models', '--out', out, '--n-boot', 20)
    return not tb and code == 0 and (out/'previous'/'evaluate.json').exists() and not (out/'.partial').exists(), f"exit {code}; previous/: {sorted(p.name for p in (out/'previous').iterdir()) if (out/'previous').exists() else None}"

@case('evaluate', 'a models folder that is not a finished run\'s (no complete.json): refused as predict refuses it, exit 2')
def evaluate__models_folder_not_finished_run_no_complete_json():
    r = copy_run('evpart'); (r/'models'/'complete.json').unlink()
    code, o, e, tb = run_cli('evaluate', quick_run()/'data', '--models', r/'models', '--out', fresh('evp'), '--n-boot', 20)
    return not tb and code == 2 and one_line(e) and "not a finished run's models" in e, f'exit {code}: {(e or tb).strip()[:160]}'

@case('report', 'an unfinished run: the page says so at the top')
def report__unfinished_run():
    r = copy_run('rep_unf'); (r/'models'/'complete.json').unlink()
    code, o, e, tb = run_cli('report', r, '--slices', 0)
    return not tb and code == 0 and 'Unfinished run' in (r/'report.html').read_text(), f'exit {code}'

@case('report', 'a damaged summary.json, an empty table2_test.csv: one line naming the file, exit 2')
def report__damaged_summary_json_empty_table2_test_csv():
    seen = []
    for f, bad in (('summary.json', '{"a": '), ('metrics/table2_test.csv', '')):
        r = copy_run('rep_bad'); (r/f).write_text(bad)
        code, o, e, tb = run_cli('report', r, '--slices', 0)
        seen.append((f, code, not tb and one_line(e) and Path(f).name in e))
    return all(ok and c == 2 for _, c, ok in seen), '; '.join(f'{f}: exit {c}, {"named" if ok else "NOT named"}' for f, c, ok in seen)

@case('report', 'a finished run whose data folder is gone (an unmounted Drive): the page from the run\'s own tables, saying so')
def report__finished_run_whose_data_folder_gone_unmounted_drive():
    r = copy_run('rep_nodata')
    c = json.loads((r/'config.json').read_text()); c['data']['root'] = str(r/'gone'); (r/'config.json').write_text(json.dumps(c))
    code, o, e, tb = run_cli('report', r)
    page = (r/'report.html').read_text() if (r/'report.html').exists() else ''
    return not tb and code == 0 and 'is not there now' in page and 'Table 2' in page, f'exit {code}: {(e or tb).strip()[:120]}'

@case('config', 'malformed settings (per_arch not a dict, nested archs, a mistyped aug name, device=banana): one line each, exit 2')
def config__malformed_settings_per_arch_not_dict_nested_archs():
    bad = ['classifiers.per_arch={"resnet34": 5}', 'classifiers.archs=[["resnet34"]]', 'data.aug={"max_rotat": 10}', 'device=banana']
    seen = [(b, *run_cli('train', quick_run()/'data', fresh('cfg'), '--preset', 'quick', '--set', b)) for b in bad]
    return all(not tb and c == 2 and one_line(e) for _, c, o, e, tb in seen), '; '.join(f'{b}: exit {c}' for b, c, o, e, tb in seen)

@case('config', 'settings accepted silently before (per_arch of a mistyped architecture, an architecture twice, lr=1e999): refused, exit 2')
def config__settings_accepted_silently_before_per_arch_mistyped_architecture():
    bad = ['classifiers.per_arch.resnet43.bs=8', 'classifiers.archs=resnet34,resnet34', 'classifiers.lr=1e999']
    seen = [(b, *run_cli('train', quick_run()/'data', fresh('cfg'), '--preset', 'quick', '--set', b)) for b in bad]
    return all(not tb and c == 2 and one_line(e) for _, c, o, e, tb in seen), '; '.join(f'{b}: exit {c}' for b, c, o, e, tb in seen)

@case('config', "device=cuda on a machine without a GPU (a Colab config.json on a laptop): one line offering the CPU, exit 2")
def config__device_cuda_machine_without_gpu_colab_config_json():
    import torch
    if torch.cuda.is_available(): return True, 'this machine has a GPU: not run'
    code, o, e, tb = run_cli('train', quick_run()/'data', fresh('cuda'), '--preset', 'quick', '--set', 'device=cuda')
    return not tb and code == 2 and one_line(e) and 'device=cpu' in e, f'exit {code}: {(e or tb).strip()[:160]}'

@case('config', "the predict section of config.json is read by predict (segment_all: true: every slice segmented)")
def config__predict_section_config_json_read_predict_segment_all():
    r = copy_run('predcfg')
    c = json.loads((r/'config.json').read_text()); c['predict']['segment_all'] = True; (r/'config.json').write_text(json.dumps(c))
    code, o, e, tb, out = predict_cli(ENV['pngs'], None, r/'models')
    meta = json.loads((out/'predict.json').read_text()) if (out/'predict.json').exists() else {}
    return not tb and code == 0 and meta.get('segment_all') is True, f"exit {code}; segment_all in predict.json: {meta.get('segment_all')}"

@case('commands/run', 'quantize on a run still training (no complete.json): refused in one line, exit 2')
def commands_run__quantize_run_still_training_no_complete_json():
    r = copy_run('q8'); (r/'models'/'complete.json').unlink()
    code, o, e, tb = run_cli('quantize', r)
    if 'stroke_ct[int8]' in e: return True, 'the int8 extra is not installed here: not run'
    return not tb and code == 2 and one_line(e) and "not a finished run's models" in e, f'exit {code}: {(e or tb).strip()[:160]}'

@case('predict/inputs', 'a folder in the competition layout: one slice per image, MASK and OVERLAY files skipped with the reason, exit 0')
def predict_inputs__folder_competition_layout():
    n = len(ENV['pngs'])
    code, o, e, tb, out = predict_cli(ENV['synth'])
    t = tables(out)
    why = ' '.join(r['reason'] for r in t['skipped'])
    return not tb and code == 0 and len(t['rows']) == n and not t['errors'] and 'the MASK of image' in why and 'the OVERLAY of image' in why, \
        f"exit {code}; {len(t['rows'])} rows for {n} images, {len(t['errors'])} errors, {len(t['skipped'])} skipped"

@case('train/resume', 'Ctrl-C while retraining the U-Net with new settings (--overwrite), then the same command without it: the new U-Net finished, not the old one kept')
def train_resume__ctrl_c_while_retraining_u_net_new_settings():
    r = copy_run('unet_ctrlc')
    args = ['train', quick_run()/'data', r, '--stage', 'unet', '--set', 'unet.epochs=4']
    cmd = [sys.executable, '-m', 'stroke_ct', *map(str, args)]
    p = ctrl_c_able(args + ['--overwrite'])
    st, t0 = r/'checkpoints'/'unet'/'state.json', time.time()
    while not st.exists() and p.poll() is None and time.time() - t0 < 300: time.sleep(0.1)
    p.send_signal(signal.SIGINT); _, err = p.communicate(timeout=120)
    old_kept = (r/'models'/'unet'/'model.json').exists()
    q = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    rec = json.loads((r/'models'/'unet'/'model.json').read_text()) if (r/'models'/'unet'/'model.json').exists() else {}
    eps = len(rec.get('train', {}).get('history', []))
    return p.returncode == 130 and not old_kept and q.returncode == 0 and eps == 4 and not (r/'checkpoints'/'unet').exists() and 'continuing from its checkpoint' in q.stdout, \
        f'stopped: exit {p.returncode}, old U-Net {"still there" if old_kept else "removed"}; again: exit {q.returncode}, {eps} epochs in the record'

@case('evaluate', 'Ctrl-C during evaluate into a used --out: exit 130, the earlier evaluation whole, nothing new beside it')
def evaluate__ctrl_c_during_evaluate_used_out():
    out = fresh('ev_ctrlc'); run_cli('evaluate', quick_run()/'data', '--models', quick_run()/'models', '--out', out, '--n-boot', 20); before = state(out)
    p = ctrl_c_able(['evaluate', quick_run()/'data', '--models', quick_run()/'models', '--out', out, '--n-boot', '2000', '--bs', '1'])
    t0 = time.time()
    while not (out/'.partial').exists() and p.poll() is None and time.time() - t0 < 120: time.sleep(0.05)
    time.sleep(0.05); p.send_signal(signal.SIGINT); _, err = p.communicate(timeout=120)   # at once: the toy models score 80 slices within a second
    return p.returncode == 130 and state(out) == before and not (out/'.partial').exists(), f'exit {p.returncode}: {err.strip()[-100:]}'

# ---------------------------------------------------------------------------------------------------- main
def main():
    global W
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--only', default=None, help='run the cases whose group or name contains this word')
    p.add_argument('--list', action='store_true', help='list the cases and exit')
    p.add_argument('--json', default=None, help='write the results here')
    p.add_argument('--work', default=None, help='scratch folder (default: a temporary one, removed at the end)')
    a = p.parse_args()
    todo = [c for c in CASES if not a.only or a.only in c[0] or a.only in c[1] or a.only in c[2].__name__]
    if a.list:
        for i, (g, n, fn) in enumerate(todo, 1): print(f'{i:3d} {fn.__name__}\n      {n}')
        return 0
    W = Path(a.work or tempfile.mkdtemp(prefix='stroke_ct-robustness-')); W.mkdir(parents=True, exist_ok=True)
    warnings.simplefilter('ignore')
    t0 = time.time()
    try:
        setup()
        print(f'{len(todo)} cases; fixtures in {time.time() - t0:.0f} s (scratch: {W})', flush=True)
        res = []
        for i, (g, n, fn) in enumerate(todo, 1):
            t = time.time()
            try: ok, seen = fn()
            except Exception as e: ok, seen = False, f'the audit case itself failed: {type(e).__name__}: {str(e)[:200]}'
            res.append(dict(group=g, test=fn.__name__, case=n, handled=bool(ok), seen=seen, seconds=round(time.time() - t, 1)))
            print(f"{i:3d} {'handled    ' if ok else 'NOT HANDLED'} {fn.__name__}: {n}\n      {seen}", flush=True)
        bad = [r for r in res if not r['handled']]
        print(f'\n{len(res) - len(bad)} of {len(res)} cases handled, {len(bad)} not, in {time.time() - t0:.0f} s')
        for r in bad: print(f"  NOT HANDLED {r['test']}: {r['case']}")
        print(f'robustness: {len(res) - len(bad)} passed, {len(bad)} failed')
        if a.json: Path(a.json).write_text(json.dumps(dict(cases=res, seconds=round(time.time() - t0)), indent=1))
        return len(bad)
    finally:
        if not a.work: shutil.rmtree(W, ignore_errors=True)

if __name__ == '__main__': sys.exit(main())
