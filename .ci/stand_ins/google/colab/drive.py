"""CI stand-in for `google.colab.drive`: `mount` makes the mount point a symlink to the folder named by
`$STROKE_CT_FAKE_DRIVE` and logs each call to `$STROKE_CT_FAKE_DRIVE/.mounts`, so CI can count the mounts per kernel.
It never touches a mount point that is anything but its own symlink."""
import os, time
from pathlib import Path

def _target()->Path:
    t = os.environ.get('STROKE_CT_FAKE_DRIVE')
    if not t: raise RuntimeError('google.colab stand-in: set STROKE_CT_FAKE_DRIVE to the folder to mount')
    if not Path(t).is_dir(): raise RuntimeError(f'google.colab stand-in: STROKE_CT_FAKE_DRIVE={t} is not a folder')
    return Path(t).absolute()

def _ours(mp:Path, target:Path)->bool: return mp.is_symlink() and Path(os.readlink(mp)) == target

def mount(mountpoint, force_remount=False, timeout_ms=120000, readonly=False):
    "Mount the stand-in drive at `mountpoint` (as a symlink), printing what Colab prints"
    target, mp = _target(), Path(mountpoint)
    already = _ours(mp, target)
    if not already:
        if os.path.lexists(mp): raise RuntimeError(f'google.colab stand-in: {mp} exists and is not the stand-in drive; not touching it')
        mp.parent.mkdir(parents=True, exist_ok=True)
        mp.symlink_to(target, target_is_directory=True)
    with open(target/'.mounts', 'a') as f: f.write(f'{os.getpid()}\t{mp}\t{time.time():.3f}\n')
    if already and not force_remount:
        print(f'Drive already mounted at {mp}; to attempt to forcibly remount, call drive.mount("{mp}", force_remount=True).')
    else: print(f'Mounted at {mp}')

def flush_and_unmount(timeout_ms=86400000):
    "Remove the stand-in mount at /content/drive (only if it is ours)"
    mp, target = Path('/content/drive'), _target()
    if _ours(mp, target): mp.unlink()
