"""int8 engines side by side (bench/README.md): per model, eager FP32 vs predict's FP32/bf16 copies vs OpenVINO+NNCF,
ONNX Runtime static QDQ and PyTorch PT2E (X86InductorQuantizer + inductor) int8, post-training static quantization.

Random weights at the seed's sizes (five classifiers at 224 px, U-Net resnet34 + self-attention at 256 px) for speed;
calibration on random inputs (the speed of an int8 network does not depend on its calibration). Needs
`pip install openvino nncf onnx onnxruntime torchao` (only the winner is a project dependency).

    python bench/experiments/int8_engines.py --size 224 --seg-size 256 --n 8 --bs 8 --threads 1
"""
from __future__ import annotations
import argparse, gc, json, os, tempfile, time, warnings
from pathlib import Path
import numpy as np, torch
warnings.filterwarnings('ignore')
ARCHS = ('resnet50', 'resnet34', 'densenet121', 'vgg19_bn', 'mobilenet_v2')

def log(*a): print(*a, flush=True)

def models(size, seg_size, seg_arch, archs):
    from stroke_ct.metrics import SEG_CLASSES
    from stroke_ct.modelio import ModelRecord, build_model
    from stroke_ct.archs import HEAD_ARGS
    res = {}
    for i, a in enumerate(archs):
        torch.manual_seed(i)
        res[a] = (build_model(ModelRecord('classifier', a, size, ['normal', 'stroke'], options=dict(HEAD_ARGS))).eval(), size)
    torch.manual_seed(9)
    rec = ModelRecord('unet', seg_arch, seg_size, SEG_CLASSES, options=dict(self_attention=True, last_cross=True))
    res['unet'] = (build_model(rec).eval(), seg_size)
    return res

def timed(f, xs):
    "Seconds for one pass over the batches `xs`, after a warm-up on the first and the last batch"
    f(xs[0])
    if len(xs) > 1: f(xs[-1])
    t0 = time.perf_counter()
    for x in xs: f(x)
    return time.perf_counter() - t0

# ---------------------------------------------------------------- engines: each returns (callable on a float32 NCHW tensor -> np array, prep seconds)
def eng_torch(m, calib, prec, cl, fold, threads):
    from stroke_ct.infer import inference_model, DTYPES
    net = inference_model(m, prec, cl, 'cpu', fold)
    dt = DTYPES.get(prec, torch.float32)
    mf = torch.channels_last if cl else torch.contiguous_format
    def f(x):
        with torch.inference_mode(): return net(x.to(dt).contiguous(memory_format=mf)).float().numpy()
    return f

def eng_openvino(m, calib, threads, bf16, int8=True, tmp=None):
    import openvino as ov, nncf
    from stroke_ct.infer import inference_model
    net = inference_model(m, 'fp32', False, 'cpu', True)
    with torch.no_grad(): ovm = ov.convert_model(net, example_input=calib[0], input=[ov.PartialShape([-1, *calib[0].shape[1:]])])
    if int8:
        ovm = nncf.quantize(ovm, nncf.Dataset([c.numpy() for c in calib]), subset_size=sum(len(c) for c in calib),
                            preset=nncf.QuantizationPreset.PERFORMANCE, fast_bias_correction=True)
    cfg = {'INFERENCE_NUM_THREADS': threads, 'INFERENCE_PRECISION_HINT': 'bf16' if bf16 else 'f32', 'PERFORMANCE_HINT': 'LATENCY'}
    cm = ov.Core().compile_model(ovm, 'CPU', cfg)
    req = cm.create_infer_request()
    def f(x): return req.infer({0: x.numpy()})[0].copy()
    return f

class _Reader:
    def __init__(self, calib): self.it = iter([{'x': c.numpy()} for c in calib])
    def get_next(self): return next(self.it, None)

def eng_ort(m, calib, threads, int8=True, tmp=None):
    import onnxruntime as ort
    from onnxruntime.quantization import quantize_static, QuantFormat, QuantType, CalibrationMethod
    from onnxruntime.quantization.shape_inference import quant_pre_process
    from stroke_ct.infer import inference_model
    net = inference_model(m, 'fp32', False, 'cpu', True)
    f32 = str(Path(tmp)/'m.onnx'); pre = str(Path(tmp)/'m_pre.onnx'); q8 = str(Path(tmp)/'m_int8.onnx')
    with torch.no_grad():
        torch.onnx.export(net, (calib[0],), f32, input_names=['x'], output_names=['y'], dynamic_axes={'x': {0: 'n'}, 'y': {0: 'n'}},
                          dynamo=False, opset_version=17)
    fn = f32
    if int8:
        quant_pre_process(f32, pre, skip_symbolic_shape=True)
        quantize_static(pre, q8, _Reader(calib), quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
        fn = q8
    so = ort.SessionOptions(); so.intra_op_num_threads = threads; so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(fn, so, providers=['CPUExecutionProvider'])
    def f(x): return sess.run(None, {'x': x.numpy()})[0]
    return f

def plain(net):
    "fastai's U-Net ends in ToTensorBase (a tensor-subclass cast, which tracers cannot follow): an Identity does the same on plain tensors"
    for mod in net.modules():
        for k, c in mod._modules.items():
            if type(c).__name__ == 'ToTensorBase': mod._modules[k] = torch.nn.Identity()
    return net

def _block_forward(self, x):
    idt = x if self.downsample is None else self.downsample(x)
    out = self.relu(self.bn1(self.conv1(x)))
    return self.relu2(self.bn2(self.conv2(out)) + idt)

def _bottleneck_forward(self, x):
    idt = x if self.downsample is None else self.downsample(x)
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.relu2(self.bn2(self.conv2(out)))
    return self.relu3(self.bn3(self.conv3(out)) + idt)

def own_relus(net):
    "torchvision's ResNet blocks call one ReLU module two or three times; PT2E's quantizer groups those calls into one partition and refuses it"
    import types
    from torchvision.models.resnet import BasicBlock, Bottleneck
    for b in net.modules():
        if type(b) is BasicBlock: b.relu2 = torch.nn.ReLU(inplace=True); b.forward = types.MethodType(_block_forward, b)
        if type(b) is Bottleneck:
            b.relu2, b.relu3 = torch.nn.ReLU(inplace=True), torch.nn.ReLU(inplace=True); b.forward = types.MethodType(_bottleneck_forward, b)
    return net

def eng_pt2e(m, calib, threads, tmp=None, fold=False):
    import torch._inductor.config as ic
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e, convert_pt2e
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
    from stroke_ct.infer import inference_model
    ic.freezing = True; ic.cpp.weight_prepack = True
    net = own_relus(plain(inference_model(m, 'fp32', False, 'cpu', fold)))
    with torch.no_grad():
        ep = torch.export.export(net, (calib[0],)).module()
        q = xiq.X86InductorQuantizer(); q.set_global(xiq.get_default_x86_inductor_quantization_config())
        pm = prepare_pt2e(ep, q)
        for c in calib: pm(c)
        cm = convert_pt2e(pm)
        opt = torch.compile(cm)
    def f(x):
        with torch.no_grad(): return opt(x).float().numpy()
    return f

ENGINES = {
    'eager_fp32': lambda m, c, t, tmp: eng_torch(m, c, 'fp32', False, False, t),
    'copy_fp32': lambda m, c, t, tmp: eng_torch(m, c, 'fp32', True, True, t),       # predict's fp32 path
    'copy_bf16': lambda m, c, t, tmp: eng_torch(m, c, 'bf16', True, True, t),       # predict's bf16 path
    'ov_fp32': lambda m, c, t, tmp: eng_openvino(m, c, t, False, int8=False),
    'ov_int8': lambda m, c, t, tmp: eng_openvino(m, c, t, False),                   # bf16 off: a CPU without bf16
    'ov_int8_bf16': lambda m, c, t, tmp: eng_openvino(m, c, t, True),
    'ort_fp32': lambda m, c, t, tmp: eng_ort(m, c, t, int8=False, tmp=tmp),
    'ort_int8': lambda m, c, t, tmp: eng_ort(m, c, t, tmp=tmp),
    'pt2e_int8': lambda m, c, t, tmp: eng_pt2e(m, c, t, tmp=tmp),
}

def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument('--size', type=int, default=224); p.add_argument('--seg-size', type=int, default=256)
    p.add_argument('--seg-arch', default='resnet34'); p.add_argument('--archs', default=','.join(ARCHS))
    p.add_argument('--n', type=int, default=8, help='slices timed per model'); p.add_argument('--bs', type=int, default=8)
    p.add_argument('--calib', type=int, default=8, help='calibration slices (random)')
    p.add_argument('--threads', type=int, default=1); p.add_argument('--engines', default=','.join(ENGINES))
    p.add_argument('--models', default=None, help='only these models (comma-separated: archs and/or unet)')
    p.add_argument('--run', default=None, help="a trained run (e.g. `stroke-ct demo` OUT): its models, calibrated on its validation split, "
                                              "answers compared with the models as trained on its test split")
    p.add_argument('--out', default=None)
    a = p.parse_args(argv)
    if a.run: return answers(a)
    torch.set_num_threads(a.threads)
    import openvino, nncf, onnxruntime, onnx, torchao
    env = dict(date=time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()), threads=a.threads, load=os.getloadavg(), torch=torch.__version__,
               openvino=openvino.__version__, nncf=nncf.__version__, onnxruntime=onnxruntime.__version__, onnx=onnx.__version__,
               torchao=torchao.__version__, args=vars(a))
    log(env)
    M = models(a.size, a.seg_size, a.seg_arch, [x for x in a.archs.split(',') if x])
    if a.models: M = {k: v for k, v in M.items() if k in a.models.split(',')}
    res = {}
    for name, (m, s) in M.items():
        g = torch.Generator().manual_seed(0)
        xs = [torch.randn(min(a.bs, a.n - i), 3, s, s, generator=g) for i in range(0, a.n, a.bs)]
        calib = [torch.randn(min(a.bs, a.calib - i), 3, s, s, generator=g) for i in range(0, a.calib, a.bs)]
        with torch.inference_mode(): ref = m(xs[0]).numpy()
        res[name] = {}
        for e in a.engines.split(','):
            tmp = tempfile.mkdtemp(prefix='int8eng_')
            try:
                t0 = time.perf_counter(); f = ENGINES[e](m, calib, a.threads, tmp); tp = time.perf_counter() - t0
                t = timed(f, xs); d = float(np.abs(f(xs[0]) - ref).max())
                res[name][e] = dict(img_s=round(a.n / t, 3), prep_s=round(tp, 1), max_abs_diff=d)
                log(f'{name:13s} {e:13s} {a.n/t:8.2f} img/s  prep {tp:6.1f}s  max|diff| {d:.2e}')
            except Exception as ex:
                res[name][e] = dict(error=f'{type(ex).__name__}: {str(ex)[:300]}')
                log(f'{name:13s} {e:13s} FAILED {type(ex).__name__}: {str(ex)[:300]}')
            finally:
                import shutil; shutil.rmtree(tmp, ignore_errors=True); gc.collect()
    tot = {}
    for e in a.engines.split(','):
        ts = [a.n / r[e]['img_s'] for r in res.values() if 'img_s' in r.get(e, {})]
        if len(ts) == len(res): tot[e] = round(a.n / sum(ts), 3)
    log('all models, img/s:', tot)
    base = tot.get('eager_fp32')
    if base: log('ratio to eager fp32:', {k: round(v / base, 2) for k, v in tot.items()})
    if a.out: Path(a.out).write_text(json.dumps(dict(env=env, per_model=res, all_models=tot), indent=1, default=str))

def answers(a):
    "Each engine's int8 copy of a trained run's models against the models as trained, on the run's test split"
    from stroke_ct.run import Run
    from stroke_ct.infer import load_models, model_input, AS_TRAINED
    from stroke_ct.quantize import calibration_files, _decode
    torch.set_num_threads(a.threads)
    R = Run(a.run); M = load_models(R.layout.models.root); rows = R.rows
    test = rows[rows.split == 'test']
    res = {}
    for m in M.all:
        if a.models and m.name not in a.models.split(','): continue
        cal = _decode(calibration_files(rows, m.kind, 100, m.rec.input), m.key)
        tst = _decode((test[test.seg_split == 'test'] if m.kind == 'unet' else test)[m.rec.input].tolist(), m.key)
        calib = [model_input(m, cal[i:i+16], AS_TRAINED) for i in range(0, len(cal), 16)]
        xs = [model_input(m, tst[i:i+16], AS_TRAINED) for i in range(0, len(tst), 16)]
        with torch.inference_mode(): ref = [m.model(x).float() for x in xs]
        res[m.name] = {}
        for e in [e for e in a.engines.split(',') if 'int8' in e]:
            tmp = tempfile.mkdtemp(prefix='int8eng_')
            try:
                f = ENGINES[e](m.model, calib, a.threads, tmp)
                ys = [torch.from_numpy(np.asarray(f(x))).float() for x in xs]
                if m.kind == 'classifier':
                    d = torch.cat([(y.softmax(1) - r.softmax(1))[:, m.stroke_idx].abs() for y, r in zip(ys, ref)])
                    flips = int(sum(((y.softmax(1)[:, m.stroke_idx] >= .5) != (r.softmax(1)[:, m.stroke_idx] >= .5)).sum() for y, r in zip(ys, ref)))
                    res[m.name][e] = dict(n=len(d), max_prob_change=round(float(d.max()), 4), mean_prob_change=round(float(d.mean()), 4), flips_at_half=flips)
                else:
                    ch = sum(int((y.argmax(1) != r.argmax(1)).sum()) for y, r in zip(ys, ref)); tot = sum(r[:, 0].numel() for r in ref)
                    res[m.name][e] = dict(n=sum(len(r) for r in ref), pixel_change=round(ch / tot, 6))
                log(f'{m.name:13s} {e:13s} {res[m.name][e]}')
            except Exception as ex:
                res[m.name][e] = dict(error=f'{type(ex).__name__}: {str(ex)[:300]}'); log(f'{m.name:13s} {e:13s} FAILED {ex}')
            finally:
                import shutil; shutil.rmtree(tmp, ignore_errors=True); gc.collect()
    if a.out: Path(a.out).write_text(json.dumps(res, indent=1))
    return res

if __name__ == '__main__': main()
