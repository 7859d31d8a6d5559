"Throughput experiment (bench/README.md): eager FP32 vs predict's FP32 inference copy vs ONNX Runtime, per model at the demo's shapes, batch 16, 2 threads. Needs: pip install onnx onnxruntime"
import time, sys, os, warnings, numpy as np, torch
warnings.filterwarnings('ignore')
from fastai.vision.all import create_unet_model, resnet18
from stroke_ct.modelio import ModelRecord, build_model
from stroke_ct.infer import inference_model
from stroke_ct.core import scratch_dir
import onnxruntime as ort
torch.set_num_threads(2)
bs, reps = 16, int(sys.argv[1]) if len(sys.argv) > 1 else 8
models = {a: (build_model(ModelRecord('classifier', a, 64, ['normal', 'stroke'])), 64) for a in ['resnet50', 'resnet34', 'densenet121', 'vgg19_bn', 'mobilenet_v2']}
models['unet_r18'] = (create_unet_model(resnet18, 3, (128, 128), pretrained=False, self_attention=False, last_cross=False), 128)
def bench(f, x):
    f(x); f(x)
    ts = []
    for _ in range(reps): t = time.perf_counter(); f(x); ts.append(time.perf_counter() - t)
    return float(np.median(ts))
tot = {}
for name, (m, s) in models.items():
    m.eval(); x = torch.randn(bs, 3, s, s)
    with torch.inference_mode():
        y0 = m(x)
        te = bench(m, x)
        mf = inference_model(m, 'fp32', channels_last=True)
        xc = x.contiguous(memory_format=torch.channels_last)
        tf = bench(mf, xc)
    t0 = time.perf_counter()
    f = str(scratch_dir()/f'{name}.onnx')   # removed at exit
    mo = inference_model(m, 'fp32', channels_last=False)
    try:
        torch.onnx.export(mo, (x,), f, input_names=['x'], output_names=['y'], dynamic_axes={'x': {0: 'n'}, 'y': {0: 'n'}}, dynamo=False, opset_version=17)
        how = 'torchscript'
    except Exception as e:
        print('legacy export failed:', type(e).__name__, str(e)[:200]); 
        torch.onnx.export(mo, (x,), f, input_names=['x'], output_names=['y'], dynamic_shapes={'x': {0: torch.export.Dim('n', min=1, max=1024)}}, dynamo=True)
        how = 'dynamo'
    texp = time.perf_counter() - t0
    so = ort.SessionOptions(); so.intra_op_num_threads = 2; so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    t0 = time.perf_counter(); sess = ort.InferenceSession(f, so, providers=['CPUExecutionProvider']); tsess = time.perf_counter() - t0
    xn = x.numpy()
    to = bench(lambda a: sess.run(None, {'x': a}), xn)
    yo = sess.run(None, {'x': xn})[0]
    d = float(np.abs(yo - y0.numpy()).max())
    tot[name] = (te, tf, to)
    print(f'{name:13s} eager {bs/te:7.1f} img/s  fp32 copy {bs/tf:7.1f} ({te/tf:.2f}x)  ORT {bs/to:7.1f} ({te/to:.2f}x)  '
          f'export {texp:.1f}s ({how}) session {tsess:.1f}s  max|diff| {d:.1e}  size {os.path.getsize(f)/1e6:.0f} MB', flush=True)
E, F, O = (sum(v[i] for v in tot.values()) for i in range(3))
print(f'all six per batch of {bs}: eager {E:.3f}s  fp32 copy {F:.3f}s ({E/F:.2f}x)  ORT {O:.3f}s ({E/O:.2f}x)')
