#!/usr/bin/env python3
"""Calibration methods compared on a run's own probabilities (RUN/metrics/probs.csv): fitted on the validation split,
scored on the test split. Temperature scaling (stroke_ct.calibration) against Platt scaling (a slope and an offset on
the logit) and isotonic regression (scikit-learn), per model and for the soft vote; then the vote chosen with and
without calibration, and whether the review flags hold the mistakes.

    python bench/calibration_methods.py RUN [RUN ...]
"""
import sys, warnings
from pathlib import Path
import numpy as np, pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.isotonic import IsotonicRegression
from stroke_ct.calibration import logit, recalibrate, fit_calibration, calibrate, fit_calibrations, ece, brier, nll, vote_answer, uncertainty, disagreement
from stroke_ct.infer import combine_votes
from stroke_ct.ensemble import vote_table
from stroke_ct.modelio import EnsembleRecord
from stroke_ct.scoring import review_table
from stroke_ct.metrics import binary_metrics

def methods(yv, pv, pt)->dict:
    "Test probabilities of each method fitted on (yv, pv)"
    iso = IsotonicRegression(out_of_bounds='clip', y_min=0, y_max=1).fit(pv, yv)
    return {'raw': pt, 'temperature': recalibrate(pt, fit_calibration(yv, pv)), 'platt': recalibrate(pt, fit_calibration(yv, pv, offset=True)),
            'isotonic': iso.predict(pt)}

def main(runs):
    for run in map(Path, runs):
        d = pd.read_csv(run/'metrics'/'probs.csv', dtype={'image_id': str})
        names = [c for c in d.columns if c not in ('image_id', 'split', 'stroke')]
        va, te = d[d.split == 'valid'], d[d.split == 'test']
        yv, yt = va.stroke.values, te.stroke.values
        print(f'\n## {run} ({len(va)} validation, {len(te)} test slices)\n')
        rows = []
        Pv, Pt = va[names].to_numpy(float).T, te[names].to_numpy(float).T
        temps = {n: fit_calibration(yv, p) for n, p in zip(names, Pv)}
        soft = {'soft_vote (mean of raw)': (Pv.mean(0), Pt.mean(0)),
                'soft_vote (mean of temperature-scaled)': (calibrate(Pv, names, temps).mean(0), calibrate(Pt, names, temps).mean(0))}
        for n in names + list(soft):
            pv, pt = soft[n] if n in soft else (va[n].values, te[n].values)
            for m, p in methods(yv, pv, pt).items():
                rows.append(dict(model=n, method=m.split(' (')[0], ece=ece(yt, p), brier=brier(yt, p), nll=nll(yt, p),
                                 answers_changed_at_05=int(((p >= .5) != (pt >= .5)).sum())))
        t = pd.DataFrame(rows)
        print(t.pivot_table(index='model', columns='method', values=['ece', 'brier'], sort=False).round(3).to_markdown())
        print('\nanswers at 0.5 changed on the test split:')
        print(t.pivot_table(index='model', columns='method', values='answers_changed_at_05', sort=False).to_markdown())
        print('\nthe vote chosen on validation, raw against calibrated (stroke_ct.ensemble.vote_table):\n')
        out = []
        for cal in (False, True):
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')
                tab, preds, conf = vote_table(d, names, n_boot=1000, calibrated=cal)
            ch = tab[tab.chosen].iloc[0]
            rec = EnsembleRecord(**conf)
            pred, prob, Pc = vote_answer(te[names].to_numpy(float).T, names, rec)
            rv = review_table(yt, pred, uncertainty(pred, prob)).iloc[0]
            out.append(dict(calibrated=cal, chosen=ch.model, threshold=round(ch.threshold, 3), f1=f'{ch.f1:.3f} [{ch.f1_lo:.3f}, {ch.f1_hi:.3f}]',
                            sensitivity=round(ch.sensitivity, 3), specificity=round(ch.specificity, 3),
                            vote_ece=round(ece(yt, prob), 3), vote_brier=round(brier(yt, prob), 3),
                            flagged=f'{int(rv.flagged)}/{int(rv.n)}', errors_in_flagged=f'{int(rv.errors_flagged)}/{int(rv.errors)}',
                            error_rate_flagged=round(rv.error_rate_flagged, 3), error_rate_other=round(rv.error_rate_other, 3)))
        print(pd.DataFrame(out).to_markdown(index=False))
        print('\nhow well each per-slice signal ranks the calibrated vote\'s mistakes (AUROC; the slices most likely wrong first):\n')
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            rec = EnsembleRecord(**vote_table(d, names, n_boot=10)[2])
        sig = []
        for split, s_ in (('valid', va), ('test', te)):
            pred, prob, Pc = vote_answer(s_[names].to_numpy(float).T, names, rec)
            err = pred != s_.stroke.values
            for k, u in (('uncertainty (calibrated chance the answer is wrong)', uncertainty(pred, prob)),
                         ('disagreement (share of models outvoted, own calls at 0.5)', disagreement(np.where(np.isnan(Pc), np.nan, Pc >= .5))),
                         ('spread (std of the calibrated model probabilities)', np.nanstd(Pc, 0))):
                sig.append(dict(signal=k, split=split, errors=int(err.sum()), auroc=round(roc_auc_score(err, u), 3)))
        print(pd.DataFrame(sig).pivot_table(index='signal', columns='split', values='auroc', sort=False).to_markdown())

if __name__ == '__main__': main(sys.argv[1:] or sys.exit(__doc__))
