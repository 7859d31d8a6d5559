"""Trained stand-ins at the seed's sizes, for benchmarks that need weights training has moved.

The teknofest preset's networks (five classifiers at 224 px, the ResNet34 U-Net with self-attention at 256 px) start
from stand-in ImageNet weights (`stroke_ct.testing.stand_in_imagenet`: torchvision's files, small random values; no
download) and are fine-tuned a few epochs on phantoms, through the project's own pipeline (`stroke_ct.pipeline.train`).
The result is a finished run folder, so every command takes it:

    python bench/trained_standins.py OUT [--n-normal 120 --n-stroke 60 --epochs 1]
    stroke-ct quantize OUT [--qat]
    python bench/bench_predict.py --models OUT/models --data OUT/data --lite --n-fastai 4

The models are not meant to be good (a few epochs on phantoms), only trained: activations and weights with the
spread that training gives them, which is what post-training quantization is sensitive to.
"""
import argparse, json, time
from pathlib import Path
from stroke_ct.data.synth import make_synth
from stroke_ct.pipeline import train
from stroke_ct.run import RunConfig
from stroke_ct.testing import stand_in_imagenet

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('out', help='run folder (the phantoms go to OUT/data)')
    p.add_argument('--n-normal', type=int, default=120)
    p.add_argument('--n-stroke', type=int, default=60, help='slices of each stroke kind')
    p.add_argument('--epochs', type=int, default=1, help='epochs after the frozen one, for the classifiers and the U-Net alike')
    p.add_argument('--seed', type=int, default=0)
    a = p.parse_args()
    out, t0 = Path(a.out), time.time()
    cfg = RunConfig.preset('teknofest').set('name=standins', f'seed={a.seed}', f'classifiers.epochs={a.epochs}', 'classifiers.bs=16',
                                            'unet.bs=4', f'unet.unfreeze_epochs={a.epochs}', 'quantize.enabled=false', 'eval.n_boot=200')
    if not (out/'data'/'data_manifest.csv').exists():
        make_synth(out/'data', n_normal=a.n_normal, n_ischemic=a.n_stroke, n_hemorrhagic=a.n_stroke, seed=a.seed)
    with stand_in_imagenet(list(cfg.classifiers.archs) + [cfg.unet.arch]):
        s = train(out/'data', out, config=cfg, stages=['classifiers', 'vote', 'unet', 'test', 'report'])
    print(json.dumps(dict(seconds=round(time.time() - t0, 1), models=str(out/'models'), model_f1=s.get('model_f1'),
                          ensemble_f1=s.get('ensemble_f1'), lesion_dice=s.get('lesion_dice')), indent=1))

if __name__ == '__main__': main()
