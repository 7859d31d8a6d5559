#!/usr/bin/env python3
"""Pages checked in a real browser (Debian's chromium and chromedriver, driven by Selenium, headless):

  report  RUN's report.html (written to a temporary folder, or --page PAGE): every <img> decoded, no SEVERE
          console entry, a full-page screenshot with content where the images are; then the self-tests: a copy of
          the page with one image's data URI corrupted, and one with it swapped for a blank PNG, must each FAIL the
          same check, naming that image.
  docs    every page `.ci/docs_check.py` rendered to _proc/_html/: as many decoded images as its notebook stores
          `image/png` outputs, none broken, no SEVERE console entry from the page itself.
  viewer  `MaskViewer` on a small synthetic set, served by Voila on a free loopback port: "next" changes the slice
          (its image id, its info line and the picture), a window preset and the level slider change the picture.

`python .ci/browser_check.py --run RUN` runs all three (`--only report,docs,viewer` picks), prints each part's time,
and checks at the end that no chromium, chromedriver, Voila or kernel process it started is left running."""
import argparse, base64, html, io, json, os, re, signal, socket, subprocess, sys, tempfile, time, traceback
from pathlib import Path
import numpy as np, psutil
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

root = Path(__file__).resolve().parent.parent
started = []   # every process this script started (chromedriver, chromium, voila, the kernel), checked at the end

class CheckFailed(Exception): pass

def _track(pid):
    "Remember `pid` and its descendants now, to check at the end that each is gone"
    try: p = psutil.Process(pid); started.extend([p, *p.children(recursive=True)])
    except psutil.NoSuchProcess: pass

class Browser:
    "Headless chromium with its console log kept (goog:loggingPrefs); quits on exit, whatever happened"
    def __enter__(self):
        o = webdriver.ChromeOptions()
        o.binary_location = os.environ.get('CHROMIUM', '/usr/bin/chromium')
        for a in ('--headless=new', '--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu', '--window-size=1300,1000',
                  '--hide-scrollbars', '--force-device-scale-factor=1'): o.add_argument(a)
        o.set_capability('goog:loggingPrefs', {'browser': 'ALL'})
        # the Debian driver, by path: Selenium Manager would try to download one
        svc = Service(executable_path=os.environ.get('CHROMEDRIVER', '/usr/bin/chromedriver'), log_output=subprocess.DEVNULL)
        self.d = webdriver.Chrome(options=o, service=svc)
        self.d.set_page_load_timeout(120)
        return self
    def __exit__(self, *a):
        _track(self.d.service.process.pid)
        self.d.quit()

    def load(self, url, timeout=60):
        "Open `url`, wait until the document and its images have loaded; the console entries of that page"
        self.d.get_log('browser')   # drop what earlier pages logged
        self.d.get(url)
        t = time.time()
        while time.time() - t < timeout:
            if self.d.execute_script("return document.readyState == 'complete' && [...document.images].every(i => i.complete)"): break
            time.sleep(0.2)
        return self.d.get_log('browser')

    def images(self):
        "Every <img>: decoded or not, its size, where it is on the page (CSS pixels), and a name for it (alt, caption or src)"
        return self.d.execute_script("""return [...document.images].map((im, k) => {
            const r = im.getBoundingClientRect(), fc = im.closest('figure')?.querySelector('figcaption');
            return {k: k, ok: im.complete && im.naturalWidth > 0, w: im.naturalWidth, h: im.naturalHeight,
                    x: r.left + scrollX, y: r.top + scrollY, cw: r.width, ch: r.height, data: im.src.startsWith('data:'),
                    src: im.src.slice(0, 60), name: im.alt || (fc ? fc.textContent : '') || im.src.slice(0, 60)};})""")

    def full_screenshot(self)->np.ndarray:
        "The whole page, beyond the window (CDP Page.captureScreenshot), as an RGB array"
        m = self.d.execute_cdp_cmd('Page.getLayoutMetrics', {})['cssContentSize']
        s = self.d.execute_cdp_cmd('Page.captureScreenshot', {'format': 'png', 'captureBeyondViewport': True,
                                   'clip': {'x': 0, 'y': 0, 'width': m['width'], 'height': m['height'], 'scale': 1}})
        return np.asarray(Image.open(io.BytesIO(base64.b64decode(s['data']))).convert('RGB'))

def has_content(a:np.ndarray, min_colours=16, min_std=8.)->tuple:
    "Is this picture more than a blank or flat area? (number of distinct colours, pixel standard deviation)"
    v = (a[..., 0].astype(np.uint32) << 16) | (a[..., 1].astype(np.uint32) << 8) | a[..., 2]
    n = int(np.count_nonzero(np.bincount(v.ravel(), minlength=1 << 24))) if a.size else 0
    sd = float(a.std()) if a.size else 0.
    return n >= min_colours and sd >= min_std, n, sd

# ---------------------------------------------------------------- report.html
def check_report_page(b:Browser, page:Path)->list:
    "The problems of a report page: undecoded images, SEVERE console entries, images blank on the screenshot"
    errs = []
    log = b.load(page.resolve().as_uri())
    ims = b.images()
    if not ims: errs.append('no <img> on the page')
    for im in ims:
        if not im['ok']: errs.append(f"image {im['k']} not decoded (naturalWidth {im['w']}): {im['name']!r}")
    errs += [f"console SEVERE: {e['message'][:300]}" for e in log if e['level'] == 'SEVERE']
    t0 = time.time(); shot = b.full_screenshot(); t_shot = time.time() - t0
    ok, n, sd = has_content(shot)
    if not ok: errs.append(f'the page screenshot is blank ({n} colours, std {sd:.1f})')
    for im in ims:
        if not im['ok']: continue
        y0, x0 = int(im['y']), int(im['x'])
        crop = shot[y0:y0 + int(im['ch']), x0:x0 + int(im['cw'])]
        ok, n, sd = has_content(crop)
        if not ok: errs.append(f"image {im['k']} blank on the screenshot ({n} colours, std {sd:.1f}): {im['name']!r}")
    print(f"  {page.name}: {len(ims)} images, {sum(i['ok'] for i in ims)} decoded; {len(log)} console entries, "
          f"{sum(e['level'] == 'SEVERE' for e in log)} SEVERE; screenshot {shot.shape[1]}x{shot.shape[0]} px, "
          f"{has_content(shot)[1]} colours, taken in {t_shot:.1f} s")
    return errs

def doctored_copy(page:Path, out:Path, how:str)->str:
    """Copy `page` to `out` with its middle data-URI image doctored: 'corrupt' overwrites the PNG signature (undecodable),
    'blank' swaps in a valid all-white PNG of the same size; that image's alt text"""
    text = page.read_text(encoding='utf-8')
    tags = [m for m in re.finditer(r'<img\b[^>]*>', text) if 'src="data:image/png;base64,' in m.group(0)]
    if not tags: raise CheckFailed(f'{page}: no data-URI image to doctor')
    m = tags[len(tags)//2]
    s = text.index('base64,', m.start()) + len('base64,'); e = text.index('"', s)
    if how == 'corrupt': new = 'X'*16 + text[s+16:e]   # no PNG signature, no IHDR
    else:
        b = io.BytesIO(); Image.new('RGB', Image.open(io.BytesIO(base64.b64decode(text[s:e]))).size, 'white').save(b, 'png')
        new = base64.b64encode(b.getvalue()).decode()
    out.write_text(text[:s] + new + text[e:], encoding='utf-8')
    alt = re.search(r'\balt="([^"]*)"', m.group(0))
    return html.unescape(alt.group(1)) if alt else m.group(0)[:60]

def report(b:Browser, page:Path, tmp:Path):
    errs = check_report_page(b, page)
    if errs: raise CheckFailed('report.html:\n  ' + '\n  '.join(errs))
    print('  report.html: every image decoded and drawn, no SEVERE console entry')
    # self-tests: the check must fail on a doctored copy, naming the image (a check that cannot fail proves nothing)
    for how, what in (('corrupt', 'not decoded'), ('blank', 'blank on the screenshot')):
        bad = tmp/f'report_{how}.html'
        name = doctored_copy(page, bad, how)
        errs = check_report_page(b, bad)
        print(f'  self-test, one image {how}: the check reports\n    ' + '\n    '.join(errs or ['nothing']))
        if not any(what in e and name and name[:40] in e for e in errs):
            raise CheckFailed(f'self-test: the check did not report the {how} image {name!r} as {what!r}: it cannot catch it')
        print(f'  self-test passed: the check fails on the {how} copy and names the image ({name!r})')

# The pages are checked as an offline reader sees them: chromium is told (CDP Network.setBlockedURLs) to load nothing over
# http(s), so a CI machine with or without internet sees the same page and a slow CDN cannot stall the check. What that
# leaves out is external, not ours, and the real site (Quarto) brings its own copies: the nbconvert lab template's
# require.js and MathJax (cdnjs.cloudflare.com), the widget manager embed-amd.js (unpkg.com), the walkthroughs' Colab badge
# (colab.research.google.com). They are listed per host, not counted as figures, and console entries about such a URL (a
# failed load, or an error inside such a script) are ignored; every other SEVERE entry is an error of the page itself: FAIL.
EXTERNAL_JS = """return [...document.querySelectorAll('script[src], link[href], img[src], iframe[src]')].map(e => e.src || e.href)
                 .filter(u => /^https?:/.test(u) && !/^https?:\\/\\/(127\\.0\\.0\\.1|localhost)[:\\/]/.test(u))"""
def external(msg:str)->bool:
    m = re.match(r'\s*(https?://[^\s"]+)', msg)
    return bool(m) and not re.match(r'https?://(127\.0\.0\.1|localhost)[:/]', m.group(1))

def docs(b:Browser, proc:Path):
    out = proc/'_html'
    pages = sorted(out.glob('*.html'))
    if not pages: raise CheckFailed(f'{out}: no pages (run .ci/docs_check first)')
    nbs = {p.stem: p for p in proc.rglob('*.ipynb') if '_html' not in p.parts}
    errs, ignored, n_imgs = [], {}, 0
    b.d.execute_cdp_cmd('Network.enable', {})
    b.d.execute_cdp_cmd('Network.setBlockedURLs', {'urls': ['http://*', 'https://*']})
    try:
        for page in pages: n_imgs += docs_page(b, page, nbs, errs, ignored)
    finally: b.d.execute_cdp_cmd('Network.setBlockedURLs', {'urls': []})
    print(f'  {len(pages)} pages, {n_imgs} stored figures, {len(errs)} problems; external resources not loaded (offline, see above): '
          + (', '.join(f'{u} x{n}' for u, n in sorted(ignored.items())) or 'none'))
    if errs: raise CheckFailed('docs pages:\n  ' + '\n  '.join(errs))

def docs_page(b:Browser, page:Path, nbs:dict, errs:list, ignored:dict)->int:
    "Check one docs page, adding to `errs` and to `ignored` (external URLs per host); its number of stored figures"
    nb = json.loads(nbs[page.stem].read_text(encoding='utf-8')) if page.stem in nbs else None
    if nb is None: errs.append(f'{page.name}: no processed notebook of that name'); return 0
    n_png = sum('image/png' in o.get('data', {}) for c in nb['cells'] if c['cell_type'] == 'code' for o in c.get('outputs', []))
    log = b.load(page.resolve().as_uri())
    ims = b.images()
    figs = [i for i in ims if i['data']]   # the stored figures; other <img> are external (badges), not loadable offline
    if sum(i['ok'] for i in figs) != n_png: errs.append(f'{page.name}: {n_png} image/png outputs, {sum(i["ok"] for i in figs)} decoded images')
    errs += [f"{page.name}: image {i['k']} not decoded: {i['name'][:60]!r}" for i in figs if not i['ok']]
    for u in b.d.execute_script(EXTERNAL_JS):
        h = re.match(r'https?://[^/]+', u).group(0); ignored[h] = ignored.get(h, 0) + 1
    errs += [f"{page.name}: console SEVERE: {e['message'][:300]}" for e in log if e['level'] == 'SEVERE' and not external(e['message'])]
    return n_png

# ---------------------------------------------------------------- the mask viewer under Voila
VIEWER_NB = [
    "from pathlib import Path\nfrom stroke_ct.data.synth import make_synth\nfrom stroke_ct.data.layout import resolve\nfrom stroke_ct.widgets import MaskViewer",
    "root = Path('synth')\nman = make_synth(root, n_normal=2, n_ischemic=2, n_hemorrhagic=2, seed=0, progress=False)\n"
    "v = MaskViewer(resolve(man, root), sort='table order')\nv.widget",
]

def free_port()->int:
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def stop(proc:subprocess.Popen):
    "Stop Voila and everything under it (the kernel runs in a session of its own): SIGTERM, then SIGKILL"
    try: kids = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess: kids = []
    started.extend(kids)
    try: os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError: pass
    try: proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL); proc.wait(5)
    gone, alive = psutil.wait_procs(kids, timeout=10)
    for p in alive: p.kill()
    psutil.wait_procs(alive, timeout=5)

def wait_for(f, what:str, timeout=60., every=0.25):
    "Poll `f` until it returns something truthy; fail naming `what` after `timeout` seconds"
    t = time.time()
    while time.time() - t < timeout:
        try: r = f()
        except Exception: r = None
        if r: return r
        time.sleep(every)
    raise CheckFailed(f'viewer: {what} (waited {timeout:.0f} s)')

def viewer(b:Browser, tmp:Path):
    import nbformat
    d = tmp/'viewer'; d.mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in VIEWER_NB])
    nb.metadata['kernelspec'] = {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}
    nbformat.write(nb, d/'viewer_app.ipynb')
    port = free_port()
    logf = open(d/'voila.log', 'w')
    proc = subprocess.Popen([sys.executable, '-m', 'voila', 'viewer_app.ipynb', '--no-browser', f'--port={port}', '--Voila.ip=127.0.0.1',
                             '--Voila.port_retries=0', '--show_tracebacks=True'], cwd=d, stdout=logf, stderr=subprocess.STDOUT,
                            start_new_session=True)
    started.append(psutil.Process(proc.pid))
    try:
        wait_for(lambda: socket.create_connection(('127.0.0.1', port), 1).close() or True, 'Voila did not listen', 60)
        t0 = time.time()
        b.d.get_log('browser')
        b.d.get(f'http://127.0.0.1:{port}/')
        D = b.d
        # the viewer's controls carry stable CSS classes (`mv-next`, `mv-image-id`, ...: `MaskViewer.__init__`), not found by their labels
        nxt = wait_for(lambda: D.find_element(By.CSS_SELECTOR, '.stroke-ct-mask-viewer button.mv-next'), 'no "next" button: the widget did not show', 180)
        print(f'  the widget showed {time.time() - t0:.1f} s after the page was asked for')
        def state():
            "(image id shown in the dropdown, first line of the info text, the picture's bytes)"
            iid = D.execute_script("const s = document.querySelector('.mv-image-id select'); return s.options[s.selectedIndex].text")
            info = D.execute_script("return document.querySelector('.mv-info .widget-html-content').innerText").split('\n')[0]
            png = base64.b64decode(D.execute_async_script("""const done = arguments[arguments.length - 1];
                const im = document.querySelector('img.mv-image');
                if (!im || !im.complete || !im.naturalWidth) { done(''); return; }
                fetch(im.src).then(r => r.arrayBuffer()).then(b => { let s = ''; const u = new Uint8Array(b);
                  for (let i = 0; i < u.length; i += 8192) s += String.fromCharCode(...u.subarray(i, i + 8192)); done(btoa(s)); })
                  .catch(e => done(''));"""))
            return iid, info, png
        def pixels(png): return np.asarray(Image.open(io.BytesIO(png)).convert('RGB')).astype(int)
        s0 = wait_for(lambda: (s := state())[2] and s, 'the picture never decoded', 60)
        a0 = pixels(s0[2])
        ok, n, sd = has_content(a0)
        if not ok: raise CheckFailed(f'viewer: the picture is blank ({n} colours, std {sd:.1f})')
        print(f'  shown: image id {s0[0]!r}, info {s0[1]!r}, picture {a0.shape[1]}x{a0.shape[0]} px, {n} colours')
        nxt.click()
        s1 = wait_for(lambda: (s := state())[2] and s[0] != s0[0] and s[1] != s0[1] and s[2] != s0[2] and s,
                      f'"next" did not change the slice shown (still {s0[0]!r})', 60)
        a1 = pixels(s1[2])
        print(f'  after "next": image id {s1[0]!r}, info {s1[1]!r}, {(np.abs(a1 - a0).sum(-1) > 0).mean():.1%} of pixels changed')
        # a window preset: the 'stroke' toggle button (brain 80/40 -> stroke 8/32)
        D.find_element(By.XPATH, "//div[contains(@class, 'mv-window')]//button[normalize-space()='stroke']").click()
        s2 = wait_for(lambda: (s := state())[2] and s[2] != s1[2] and s, 'the "stroke" window did not change the picture', 60)
        a2 = pixels(s2[2])
        lvl = lambda: D.execute_script("return document.querySelector('.mv-level .widget-readout')?.innerText")
        wait_for(lambda: lvl() == '32', f'the level readout does not show the preset\'s 32 (shows {lvl()!r})', 20)
        print(f"  'stroke' preset: level readout {lvl()}, {(np.abs(a2 - a1).sum(-1) > 0).mean():.1%} of pixels changed")
        if s2[0] != s1[0]: raise CheckFailed(f'viewer: the window preset changed the slice ({s1[0]!r} -> {s2[0]!r})')
        # the level slider, through its editable readout, as a user types a value
        ro = D.find_element(By.CSS_SELECTOR, '.mv-level .widget-readout')
        ro.click(); ro.send_keys(Keys.CONTROL, 'a'); ro.send_keys('200', Keys.ENTER)
        s3 = wait_for(lambda: (s := state())[2] and s[2] != s2[2] and s, 'typing level 200 did not change the picture', 60)
        a3 = pixels(s3[2])
        wait_for(lambda: lvl() == '200', f'the level readout does not show 200 (shows {lvl()!r})', 20)
        print(f'  level 200 typed: {(np.abs(a3 - a2).sum(-1) > 0).mean():.1%} of pixels changed')
        # ipywidgets' CSS asks jsdelivr for Font Awesome (icons; the viewer's buttons have none): offline it fails to load,
        # as the docs pages' CDN scripts do; such entries are ignored and named, any other SEVERE entry fails
        log = [e['message'] for e in D.get_log('browser') if e['level'] == 'SEVERE']
        sev = [m[:300] for m in log if not external(m)]
        if sev: raise CheckFailed('viewer: console SEVERE:\n  ' + '\n  '.join(sev))
        ext = sorted({re.match(r'\s*(https?://[^/\s]+)', m).group(1) for m in log if external(m)})
        print(f'  no SEVERE console entry from the page ({len(log) - len(sev)} external loads ignored: {", ".join(ext) or "none"})')
    except Exception:
        logf.flush(); print('--- voila log (tail) ---\n' + (d/'voila.log').read_text()[-3000:]); raise
    finally:
        stop(proc); logf.close()

# ----------------------------------------------------------------
def leftovers()->list:
    "Processes this script started that still run, and any chromium/chromedriver/Voila on the machine"
    _, alive = psutil.wait_procs(started, timeout=20)   # chromium's helpers take a moment to exit after quit()
    left = []
    for p in alive:
        try:
            if p.status() != psutil.STATUS_ZOMBIE: left.append(f'{p.pid} {" ".join(p.cmdline())[:120]}')
        except psutil.NoSuchProcess: pass
    for p in psutil.process_iter(['pid', 'name', 'cmdline']):
        argv = p.info['cmdline'] or []
        voila = any(argv[i:i+2] == ['-m', 'voila'] for i in range(len(argv))) or any(os.path.basename(a) == 'voila' for a in argv[:2])
        if p.info['name'] in ('chromium', 'chromedriver') or voila: left.append(f"{p.info['pid']} {' '.join(argv)[:120]}")
    return sorted(set(left))

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--run', help='a run folder: its report.html is written to a temporary folder and checked')
    ap.add_argument('--page', help='a report.html to check instead of writing one from --run')
    ap.add_argument('--proc', default=str(root/'_proc'), help='the processed notebooks, with _html/ from .ci/docs_check.py')
    ap.add_argument('--only', default='report,docs,viewer', help='the parts to run, comma-separated')
    a = ap.parse_args()
    parts = a.only.split(',')
    # `timeout` stops us with SIGTERM: leave through the finally blocks, so that Voila, its kernel and chromium are stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit('browser checks: stopped by SIGTERM (time limit?)'))
    if 'report' in parts and not (a.run or a.page): ap.error('report: give --run RUN or --page PAGE')
    times, failed, t_all = {}, [], time.time()
    with tempfile.TemporaryDirectory(prefix='browser_check_') as tmp, Browser() as b:
        tmp = Path(tmp)
        for part in parts:
            print(f'== browser: {part}'); t0 = time.time()
            try:
                if part == 'report':
                    page = Path(a.page) if a.page else None
                    if page is None:
                        from stroke_ct.runreport import write_report_html
                        page = write_report_html(a.run, out=tmp/'report.html')
                        print(f'  report.html of {a.run} written in {time.time() - t0:.1f} s')
                    report(b, page, tmp)
                elif part == 'docs': docs(b, Path(a.proc))
                elif part == 'viewer': viewer(b, tmp)
                else: ap.error(f'unknown part {part!r}')
            except CheckFailed as e: print(f'FAIL {e}'); failed.append(part)
            except Exception: traceback.print_exc(); print(f'FAIL {part}: the check itself broke (above)'); failed.append(part)
            times[part] = time.time() - t0
            print(f'== browser: {part} took {times[part]:.1f} s')
    left = leftovers()
    if left: print('FAIL: processes left running:\n  ' + '\n  '.join(left)); failed.append('processes')
    else: print(f'no chromium, chromedriver, Voila or kernel process left running ({len(started)} started, all stopped)')
    print(f'browser checks took {time.time() - t_all:.1f} s (' + ', '.join(f'{k} {v:.1f} s' for k, v in times.items()) + ')' + (f'; FAILED: {failed}' if failed else '; all passed'))
    sys.exit(1 if failed else 0)

if __name__ == '__main__': main()
