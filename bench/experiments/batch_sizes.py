"""Best batch size per model and path on a CPU (bench/README.md): seconds per slice of each model at batch sizes 1-16,
eager FP32, predict's FP32 and bf16 copies, and the int8 copy (OpenVINO + NNCF, calibrated on random inputs), random
weights at the seed's sizes. Needs the `int8` extra.

    python bench/experiments/batch_sizes.py --threads 2 --n 16
"""
import argparse, json, sys, time, warnings
from pathlib import Path
import torch
warnings.filterwarnings('ignore')
sys.path.insert(0, str(Path(__file__).parent))
from int8_engines import models, log

def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument('--size', type=int, default=224); p.add_argument('--seg-size', type=int, default=256)
    p.add_argument('--n', type=int, default=16); p.add_argument('--threads', type=int, default=2)
    p.add_argument('--sizes', default='1,2,4,8,16'); p.add_argument('--models', default=None)
    p.add_argument('--paths', default='eager_fp32,copy_fp32,copy_bf16,int8'); p.add_argument('--out', default=None)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    from stroke_ct.infer import inference_model
    from stroke_ct.quantize import quantize_model, Int8Model, best_batch_size
    M = models(a.size, a.seg_size, 'resnet34', ['resnet50', 'resnet34', 'densenet121', 'vgg19_bn', 'mobilenet_v2'])
    if a.models: M = {k: v for k, v in M.items() if k in a.models.split(',')}
    sizes = tuple(int(s) for s in a.sizes.split(','))
    res = dict(env=dict(date=time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()), threads=a.threads, torch=torch.__version__, args=vars(a)))
    for name, (m, s) in M.items():
        x = torch.randn(a.n, 3, s, s, generator=torch.Generator().manual_seed(0))
        res[name] = {}
        for path in a.paths.split(','):
            if path == 'int8':
                class _S: pass
                spec = _S(); spec.name, spec.model, spec.size = name, m, s
                f = Int8Model(quantize_model(spec, [x[:4]]))
            else:
                prec, cl, fold = dict(eager_fp32=('fp32', False, False), copy_fp32=('fp32', True, True), copy_bf16=('bf16', True, True))[path]
                net = inference_model(m, prec, cl, 'cpu', fold) if path != 'eager_fp32' else m.eval()
                dt, mf = (torch.bfloat16 if prec == 'bf16' else torch.float32), (torch.channels_last if cl else torch.contiguous_format)
                f = lambda b, net=net, dt=dt, mf=mf: net(b.to(dt).contiguous(memory_format=mf))
            bs, t = best_batch_size(f, x, sizes)
            res[name][path] = dict(best=bs, s_per_slice=t)
            log(f'{name:13s} {path:11s} best bs {bs:2d}   ' + '  '.join(f'bs{k} {1/v:6.2f}/s' for k, v in t.items()))
    if a.out: Path(a.out).write_text(json.dumps(res, indent=1))

if __name__ == '__main__': main()
