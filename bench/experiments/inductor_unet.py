"U-Net (resnet18, 128 px) FP32: eager vs predict's copy vs torch.compile (inductor, freezing), batch 16, 2 threads"
import time, numpy as np, torch, warnings; warnings.filterwarnings('ignore')
import torch._inductor.config as ic
ic.freezing = True; ic.cpp.weight_prepack = True
from fastai.vision.all import create_unet_model, resnet18
from stroke_ct.infer import inference_model
torch.set_num_threads(2)
m = create_unet_model(resnet18, 3, (128, 128), pretrained=False, self_attention=False, last_cross=False).eval()
x = torch.randn(16, 3, 128, 128)
def bench(f, x, reps=8):
    f(x); f(x); ts = []
    for _ in range(reps): t = time.perf_counter(); f(x); ts.append(time.perf_counter() - t)
    return float(np.median(ts))
with torch.no_grad():
    y = m(x); te = bench(m, x)
    mf = inference_model(m, 'fp32', channels_last=True); xc = x.contiguous(memory_format=torch.channels_last); tf = bench(mf, xc)
    print(f'eager {16/te:.1f} img/s, copy {16/tf:.1f} ({te/tf:.2f}x)', flush=True)
    mc = torch.compile(inference_model(m, 'fp32', channels_last=True))
    t0 = time.perf_counter(); yc = mc(xc); tcomp = time.perf_counter() - t0
    print(f'compile {tcomp:.0f}s, max|diff| {(yc - y).abs().max():.1e}', flush=True)
    tc = bench(mc, xc)
    print(f'compiled {16/tc:.1f} img/s ({te/tc:.2f}x)', flush=True)
