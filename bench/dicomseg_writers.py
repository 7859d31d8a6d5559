"""DICOM-SEG writers side by side: highdicom (what stroke_ct uses) and pydicom-seg, on the same phantom series.

    stroke-ct synth-series SER --n 1 --slices 32 --size 512      # one 512x512x32 series with its true masks
    python bench/dicomseg_writers.py SER                           # needs: pip install highdicom pydicom-seg SimpleITK

For each writer: seconds to write (best of 3), file size, dciodvfy errors (dicom3tools, if installed), and whether the
object read back with highdicom gives the masks frame for frame."""
import sys, time, shutil, subprocess, tempfile, warnings
from pathlib import Path
import numpy as np, pydicom
warnings.simplefilter('ignore')

ser = Path(sys.argv[1])
files = sorted((ser/'dicom').rglob('*.dcm'))
dss = sorted((pydicom.dcmread(f, stop_before_pixels=True) for f in files), key=lambda d: float(d.ImagePositionPatient[2]))
masks = next(iter(np.load(ser/'truth_masks.npz').values())).astype(np.uint8)
tmp = Path(tempfile.mkdtemp())

def with_highdicom(fn):
    import highdicom as hd
    from pydicom.sr.codedict import codes
    alg = hd.AlgorithmIdentificationSequence(name='bench', version='1', family=codes.cid7162.ArtificialIntelligence)
    d = [hd.seg.SegmentDescription(k, n, codes.SCT.MorphologicallyAbnormalStructure, hd.sr.CodedConcept(c, 'SCT', n.title()),
                                   hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, alg)
         for k, n, c in [(1, 'hemorrhage', '50960005'), (2, 'ischemia', '52674009')]]
    hd.seg.Segmentation(dss, masks, hd.seg.SegmentationTypeValues.BINARY, d, hd.UID(), 901, hd.UID(), 1, 'bench', 'bench', '1', '0').save_as(fn)

def with_pydicom_seg(fn):
    import pydicom_seg, SimpleITK as sitk
    tpl = pydicom_seg.template.from_dcmqi_metainfo({
        'ContentCreatorName': 'bench', 'SeriesDescription': 'bench', 'SeriesNumber': '901', 'InstanceNumber': '1',
        'segmentAttributes': [[{'labelID': k, 'SegmentLabel': n, 'SegmentDescription': n, 'SegmentAlgorithmType': 'AUTOMATIC', 'SegmentAlgorithmName': 'bench',
            'SegmentedPropertyCategoryCodeSequence': {'CodeValue': '49755003', 'CodingSchemeDesignator': 'SCT', 'CodeMeaning': 'Morphologically Abnormal Structure'},
            'SegmentedPropertyTypeCodeSequence': {'CodeValue': c, 'CodingSchemeDesignator': 'SCT', 'CodeMeaning': n.title()}}
            for k, n, c in [(1, 'hemorrhage', '50960005'), (2, 'ischemia', '52674009')]]]})
    img = sitk.GetImageFromArray(masks)
    img.SetSpacing([float(dss[0].PixelSpacing[1]), float(dss[0].PixelSpacing[0]), abs(float(dss[1].ImagePositionPatient[2]) - float(dss[0].ImagePositionPatient[2]))])
    img.SetOrigin([float(v) for v in dss[0].ImagePositionPatient])
    pydicom_seg.MultiClassWriter(template=tpl, inplane_cropping=False, skip_empty_slices=True, skip_missing_segment=False).write(img, dss).save_as(fn)

def read_back(fn):
    import highdicom as hd
    s = hd.seg.segread(fn)
    return s.get_pixels_by_source_instance([d.SOPInstanceUID for d in dss], combine_segments=True, relabel=True, skip_overlap_checks=True)

print(f'series: {len(dss)} slices of {masks.shape[2]}x{masks.shape[1]}, {int((masks > 0).sum())} lesion pixels')
print('| writer | write s (best of 3) | size MB | dciodvfy errors | read back frame-exact |\n|---|---|---|---|---|')
for name, w in [('highdicom', with_highdicom), ('pydicom-seg', with_pydicom_seg)]:
    fn, ts = tmp/f'{name}.dcm', []
    try:
        for _ in range(3): t = time.perf_counter(); w(fn); ts.append(time.perf_counter() - t)
    except Exception as e: print(f'| {name} | failed: {type(e).__name__}: {str(e)[:120]} | | | |'); continue
    errs = ([l for l in subprocess.run(['dciodvfy', str(fn)], capture_output=True, text=True).stderr.splitlines() if l.startswith('Error')]
            if shutil.which('dciodvfy') else None)
    try: exact = bool((read_back(fn) == masks).all())
    except Exception as e: exact = f'{type(e).__name__}: {str(e)[:80]}'
    print(f'| {name} | {min(ts):.2f} | {fn.stat().st_size/1e6:.2f} | {"n/a" if errs is None else len(errs)} | {exact} |')
    if errs: print('   ', errs[:3])
