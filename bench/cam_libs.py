"""Grad-CAM of the 'stroke' class, four ways, side by side: fastai's `hook_output` + `torch.autograd.grad`, pytorch-grad-cam
(`pip install grad-cam`), captum's `LayerGradCam` and torchcam's `GradCAM`, on the five classifiers of a models folder.

Per library and model, in a fresh child process (so memory figures do not leak between runs): seconds per slice for a
batch of 8 and of 1 (median of `--reps` after one warm-up call), the peak extra RSS while the maps are computed (sampled
every 2 ms, above the RSS once the model and inputs are loaded), whether the model's parameters got `.grad` and whether
it stayed in eval mode. The parent then compares every library's maps with the fastai ones: Pearson r per slice of the
upsampled maps (mean over slices), and the share of slices whose peak (argmax; tied pixels
resolved to their mean position) lands within `--tol` pixels (Chebyshev) of the fastai peak.

    flock /tmp/torch.lock python bench/cam_libs.py --models RUN/models --data RUN/data --out cam_libs.json
"""
import argparse, inspect, json, os, subprocess, sys, tempfile, threading, time
from pathlib import Path
import numpy as np, pandas as pd, torch, torch.nn.functional as F

LIBS = ('fastai', 'grad-cam', 'captum', 'torchcam')

def cam_layer(m):
    "Target layer: the last convolutional block of the body (`model[0]`), before any final pooling"
    body, arch = m.model[0], m.rec.arch
    if arch.startswith('resnet'): return body[-1]        # layer4
    if arch == 'vgg19_bn': return body[0][-2]            # the last ReLU, before the last MaxPool
    return body[0][-1]                                   # densenet121: norm5; mobilenet_v2: the last 1x1 ConvBNReLU

def norm_up(cam, size):
    "(n, h, w) tensor -> (n, size, size) float32 numpy in [0, 1]: bilinear upsampling, then divided by each map's max"
    cam = F.interpolate(cam[:, None].float(), size=(size, size), mode='bilinear', align_corners=False)[:, 0].clamp_min(0)
    mx = cam.flatten(1).amax(1).clamp_min(1e-12)[:, None, None]
    return (cam / mx).detach().cpu().numpy()

def cam_fastai(m, x, layer):
    from fastai.callback.hook import hook_output
    with torch.inference_mode(False), torch.enable_grad(), hook_output(layer, detach=False) as h:
        y = m.model(x.requires_grad_())
        g, = torch.autograd.grad(y[:, m.stroke_idx].sum(), h.stored)
        cam = F.relu((g.mean((2, 3), keepdim=True) * h.stored).sum(1))
    return norm_up(cam, x.shape[-1])

def cam_gradcam(m, x, layer):
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    with GradCAM(model=m.model, target_layers=[layer]) as cam:
        return cam(input_tensor=x, targets=[ClassifierOutputTarget(m.stroke_idx)]*len(x)).astype(np.float32)

def cam_captum(m, x, layer):
    from captum.attr import LayerGradCam
    a = LayerGradCam(m.model, layer).attribute(x.requires_grad_(), target=m.stroke_idx, relu_attributions=True)
    return norm_up(a[:, 0], x.shape[-1])

def cam_torchcam(m, x, layer):
    from torchcam.methods import GradCAM
    with torch.enable_grad(), GradCAM(m.model, target_layer=layer, input_shape=tuple(x.shape[1:])) as ex:
        cam, = ex(class_idx=m.stroke_idx, scores=m.model(x))
    return norm_up(cam, x.shape[-1])

FNS = dict(zip(LIBS, (cam_fastai, cam_gradcam, cam_captum, cam_torchcam)))

def rss()->int:
    with open('/proc/self/statm') as f: return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')

class Peak:
    "Peak RSS sampled in a thread while the block runs"
    def __enter__(self):
        self.peak, self.go = rss(), True
        def watch():
            while self.go: self.peak = max(self.peak, rss()); time.sleep(0.002)
        self.t = threading.Thread(target=watch, daemon=True); self.t.start(); return self
    def __exit__(self, *a): self.go = False; self.t.join(); self.peak = max(self.peak, rss())

def inputs(m, files):
    "What `infer` feeds the model: `slice_batches` uint8 NHWC -> `model_input` (fp32, NCHW, normalised)"
    from stroke_ct.infer import slice_batches, model_input, AS_TRAINED
    b = next(iter(slice_batches(files, [m.key], bs=len(files))))
    return model_input(m, b['x'][m.key], AS_TRAINED)

def child(a):
    "One library on one model: timings, memory, side effects; maps saved to `a.save`"
    torch.set_num_threads(a.threads)
    from stroke_ct.infer import load_models
    m = next(o for o in load_models(a.models).classifiers if o.name == a.model)
    files = json.loads(Path(a.files).read_text())
    x = inputs(m, files)
    fn, layer = FNS[a.lib], cam_layer(m)
    m.model.eval()
    fn(m, x[:8].clone(), layer)                                      # warm-up
    for p in m.model.parameters(): p.grad = None
    r0 = rss()
    with Peak() as pk:
        t8, t1 = [], []
        for _ in range(a.reps):
            t = time.perf_counter(); fn(m, x[:8].clone(), layer); t8.append((time.perf_counter() - t)/8)
        for _ in range(a.reps):
            t = time.perf_counter(); fn(m, x[:1].clone(), layer); t1.append(time.perf_counter() - t)
        maps = np.concatenate([fn(m, x[i:i+8].clone(), layer) for i in range(0, len(x), 8)])
    np.save(a.save, maps)
    grads = any(p.grad is not None for p in m.model.parameters())
    print(json.dumps(dict(lib=a.lib, model=a.model, s_per_slice_bs8=float(np.median(t8)), s_per_slice_bs1=float(np.median(t1)),
                          peak_extra_mb=(pk.peak - r0)/2**20, sets_param_grad=grads, eval_kept=not m.model.training)))

def peaks(maps):
    "(row, col) of each map's maximum; ties (the flat corners of an upsampled 2x2 map) resolved to their mean position"
    out = []
    for m in maps:
        ys, xs = np.nonzero(m >= m.max() - 1e-6*abs(m.max()))
        out.append((round(ys.mean()), round(xs.mean())))
    return np.array(out)

def pearson(a, b):
    a, b = a.reshape(len(a), -1).astype(float), b.reshape(len(b), -1).astype(float)
    a, b = a - a.mean(1, keepdims=True), b - b.mean(1, keepdims=True)
    den = np.sqrt((a*a).sum(1) * (b*b).sum(1))
    return np.where(den > 0, (a*b).sum(1) / np.where(den > 0, den, 1), np.nan)

def code_lines(fn)->int:
    return sum(1 for l in inspect.getsource(fn).splitlines()[1:] if l.strip() and not l.strip().startswith('#'))

def main(a):
    from stroke_ct.infer import load_models
    ms = load_models(a.models)
    df = pd.read_csv(Path(a.data)/'data_manifest.csv')
    df = df[(df.split == 'test') & (df.stroke == 1)].sort_values('image_id').head(a.n)
    files = [str(Path(a.data)/'TRAINING'/r.folder/'PNG'/f'{r.image_id}.png') for r in df.itertuples()]
    rows, tmp = [], Path(tempfile.mkdtemp())
    (tmp/'files.json').write_text(json.dumps(files))
    for m in ms.classifiers:
        from fastai.callback.hook import hook_output
        with torch.no_grad(), hook_output(cam_layer(m)) as h: m.model.eval()(inputs(m, files[:1]))
        fm = 'x'.join(map(str, h.stored.shape[1:]))
        for lib in LIBS:
            cmd = [sys.executable, __file__, '--child', '--lib', lib, '--model', m.name, '--models', a.models, '--files', str(tmp/'files.json'),
                   '--save', str(tmp/f'{m.name}_{lib}.npy'), '--reps', str(a.reps), '--threads', str(a.threads)]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode: print(out.stderr[-3000:]); rows.append(dict(lib=lib, model=m.name, error=out.stderr.strip().splitlines()[-1])); continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            r['arch'], r['size'], r['layer'], r['fmap'] = m.rec.arch, m.size, type(cam_layer(m)).__name__, fm
            rows.append(r); print(r, flush=True)
        ref = np.load(tmp/f'{m.name}_fastai.npy')
        for r in rows:
            if r['model'] != m.name or 'error' in r: continue
            mp = np.load(tmp/f'{m.name}_{r["lib"]}.npy')
            r['pearson_r'] = float(np.nanmean(pearson(mp, ref)))
            r['peak_same'] = float((np.abs(peaks(mp) - peaks(ref)).max(1) <= a.tol).mean())
    for lib, fn in FNS.items():
        for r in rows:
            if r['lib'] == lib: r['code_lines'] = code_lines(fn)
    t = pd.DataFrame(rows)
    print(t.to_string())
    if a.out: Path(a.out).write_text(json.dumps(dict(n_slices=len(files), tol=a.tol, threads=a.threads, torch=torch.__version__, rows=rows), indent=1))

if __name__ == '__main__':
    p = argparse.ArgumentParser()
    p.add_argument('--models', default='/tmp/ref_demo/models'); p.add_argument('--data', default='/tmp/ref_demo/data')
    p.add_argument('--n', type=int, default=16); p.add_argument('--reps', type=int, default=5); p.add_argument('--tol', type=int, default=2)
    p.add_argument('--threads', type=int, default=2); p.add_argument('--out', default='')
    p.add_argument('--child', action='store_true'); p.add_argument('--lib'); p.add_argument('--model'); p.add_argument('--files'); p.add_argument('--save')
    a = p.parse_args()
    child(a) if a.child else main(a)
