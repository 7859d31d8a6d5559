"""How sensitive a run's classifiers are to perturbations of int8's size, with no quantizer at all.

An int8 copy is accepted only if no validation slice's P(stroke) moves by more than a bound (0.05 by default). This
script measures where a model's own floor lies: the largest and mean change of P(stroke) on the validation slices
`quantize` checks on, for the float model in PyTorch with
- its convolution and linear weights plus uniform noise of up to half a per-channel int8 step (`--draws` draws),
- its weights rounded to their nearest per-channel int8 value,
- its input plus uniform noise of up to half a grey level of the 8-bit slice (`--draws` draws).
A model that every draw moves beyond the bound is moved that far by weight changes of int8's size alone, before any
activation is quantized.

    python bench/int8_floor.py RUN [--draws 3] [--out floor.json]
"""
import argparse, copy, json
import torch
from torch import nn
from stroke_ct.run import Run
from stroke_ct.infer import load_models, model_input, slice_batches, AS_TRAINED
from stroke_ct.quantize import calibration_files, plain_model

def int8_step(w):
    "Per-output-channel step of symmetric int8 weights (max |w| / 127), shaped to broadcast against `w`"
    return w.abs().flatten(1).amax(1).clamp(min=1e-12).view(-1, *[1]*(w.dim() - 1))/127

def perturbed(net, f):
    "A copy of `net` whose convolution and linear weights are replaced by `f(weight, step)`"
    n2 = copy.deepcopy(net)
    with torch.no_grad():
        for mod in n2.modules():
            if isinstance(mod, (nn.Conv2d, nn.Linear)): mod.weight.copy_(f(mod.weight, int8_step(mod.weight)))
    return n2

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('run', help='a run folder (config.json, data manifest and models/)')
    p.add_argument('--draws', type=int, default=3)
    p.add_argument('--n', type=int, default=300, help="validation slices per model, at most (as `quantize`'s default)")
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--out', help='also write the figures to this JSON file')
    a = p.parse_args()
    R = Run(a.run); M = load_models(R.layout.models.root)
    torch.manual_seed(a.seed)
    res = {}
    for m in M.classifiers:
        files = calibration_files(R.rows, m.kind, a.n, m.rec.input, R.cfg.seed)
        x8 = torch.cat([b['x'][m.key] for b in slice_batches(files, [m.key], bs=32) if b['i']])
        X = torch.cat([model_input(m, x8[i:i+16], AS_TRAINED) for i in range(0, len(x8), 16)])
        net = plain_model(copy.deepcopy(m.model).float()).eval()
        grey = model_input(m, torch.ones_like(x8[:1]), AS_TRAINED) - model_input(m, torch.zeros_like(x8[:1]), AS_TRAINED)   # one grey level, per channel
        with torch.inference_mode(): p0 = net(X).softmax(1)[:, m.stroke_idx]
        def change(f):
            with torch.inference_mode(): d = (f(X).softmax(1)[:, m.stroke_idx] - p0).abs()
            return dict(max=round(float(d.max()), 4), mean=round(float(d.mean()), 4))
        res[m.name] = dict(n=len(X),
            weights_noise=[change(perturbed(net, lambda w, s: w + (torch.rand_like(w) - .5)*s)) for _ in range(a.draws)],
            weights_rounded=change(perturbed(net, lambda w, s: (w/s).round()*s)),
            input_noise=[change(lambda x: net(x + (torch.rand_like(x) - .5)*grey)) for _ in range(a.draws)])
        r = res[m.name]
        print(f"{m.name} ({len(X)} slices): weights + half a step {[d['max'] for d in r['weights_noise']]}, rounded {r['weights_rounded']['max']}, "
              f"input + half a grey level {[d['max'] for d in r['input_noise']]}", flush=True)
    if a.out:
        with open(a.out, 'w') as f: json.dump(res, f, indent=1)

if __name__ == '__main__': main()
