/* The live explorer of chapters 5 and 6: forward and reverse trajectories on a 2-D Gaussian
 * mixture, recomputed in the page, with no kernel and no network.
 *
 * A second implementation, in plain JavaScript and float64, of exactly the math of
 * oldschool.sde (the Gaussian paths x_t = alpha(t) x0 + sigma(t) eps with their SDE
 * dx = f(t) x dt + g(t) dW), oldschool.gaussian_mixture.GaussianMixture.score (the exact diffused score)
 * and oldschool.samplers (Euler-Maruyama on the reverse SDE, eq. (17); Euler and Heun on the
 * probability-flow ODE, eq. (18)); the names are the Python names. tests/test_explorer.py
 * checks the two agree to 1e-6 for the same noise. oldschool.explorer inlines this file into
 * the cell output, with the mixture and the controls' grids as JSON.
 */
(function (root) {
  "use strict";

  // ------------------------------------------------------------------------------------------
  // Gaussian paths (oldschool.sde): a path is alpha, sigma, f, g2 on t in [0, T]
  // ------------------------------------------------------------------------------------------

  function GaussianPath(name, p) {
    // p: {alpha, sigma, f, g2, prior_std, lam (optional)}; the rest follows as in sde.py.
    const path = Object.assign({ name: name, T: 1.0, prior_std: 1.0 }, p);
    path.g = (t) => Math.sqrt(path.g2(t));
    if (!path.lam) path.lam = (t) => 2 * (Math.log(path.alpha(t)) - Math.log(path.sigma(t)));
    return path;
  }

  function VPSDE(beta_min, beta_max) {
    // eq. (15): beta(t) = beta_min + t (beta_max - beta_min), alpha = exp(-1/2 int beta).
    const beta = (t) => beta_min + t * (beta_max - beta_min);
    const log_alpha = (t) => -0.5 * t * beta_min - 0.25 * t * t * (beta_max - beta_min);
    return GaussianPath("VPSDE", {
      params: [beta_min, beta_max], beta: beta, log_alpha: log_alpha,
      alpha: (t) => Math.exp(log_alpha(t)),
      sigma: (t) => Math.sqrt(-Math.expm1(2 * log_alpha(t))), // sqrt(1 - alpha^2)
      lam: (t) => 2 * log_alpha(t) - Math.log(-Math.expm1(2 * log_alpha(t))),
      f: (t) => -0.5 * beta(t),
      g2: beta,
    });
  }

  function SubVPSDE(beta_min, beta_max) {
    // Song et al. 2021, eq. (29): VP's drift, g^2 = beta (1 - alpha^4), sigma = 1 - alpha^2.
    const vp = VPSDE(beta_min, beta_max);
    return GaussianPath("SubVPSDE", {
      params: [beta_min, beta_max], beta: vp.beta, log_alpha: vp.log_alpha, alpha: vp.alpha, f: vp.f,
      sigma: (t) => -Math.expm1(2 * vp.log_alpha(t)),
      lam: (t) => 2 * (vp.log_alpha(t) - Math.log(-Math.expm1(2 * vp.log_alpha(t)))),
      g2: (t) => vp.beta(t) * -Math.expm1(4 * vp.log_alpha(t)),
    });
  }

  function VESDE(sigma_min, sigma_max) {
    // eq. (16): noise scale s(t) = sigma_min (sigma_max / sigma_min)^t, no drift,
    // sigma(t)^2 = s(t)^2 - sigma_min^2 (started at a data point), prior N(0, sigma_max^2).
    const noise_scale = (t) => sigma_min * Math.pow(sigma_max / sigma_min, t);
    return GaussianPath("VESDE", {
      params: [sigma_min, sigma_max], noise_scale: noise_scale, prior_std: sigma_max,
      alpha: (t) => 1.0,
      sigma: (t) => Math.sqrt(noise_scale(t) ** 2 - sigma_min ** 2),
      f: (t) => 0.0,
      g2: (t) => noise_scale(t) ** 2 * (2 * Math.log(sigma_max / sigma_min)),
    });
  }

  function LinearPath(t_max) {
    // Rectified flow (sde.LinearPath, chapter 8): alpha = 1 - t, sigma = t, so f = -1 / (1 - t)
    // and g^2 = d sigma^2 / dt - 2 f sigma^2 = 2 t / (1 - t); both blow up at t = 1, so the
    // path ends at T = t_max (default 0.999).
    const T = t_max === undefined ? 0.999 : t_max;
    return GaussianPath("LinearPath", {
      params: [T], T: T,
      alpha: (t) => 1 - t,
      sigma: (t) => t,
      lam: (t) => 2 * (Math.log1p(-t) - Math.log(t)),
      f: (t) => -1 / (1 - t),
      g2: (t) => 2 * t / (1 - t),
    });
  }

  function make_sde(kind, s) {
    // The path named kind (as trajectory_figure.make_sde),
    // s: {beta_min, beta_max, sigma_min, sigma_max}.
    if (kind === "VP") return VPSDE(s.beta_min, s.beta_max);
    if (kind === "sub-VP") return SubVPSDE(s.beta_min, s.beta_max);
    if (kind === "VE") return VESDE(s.sigma_min, s.sigma_max);
    if (kind === "linear") return LinearPath();
    throw new Error("unknown SDE kind " + kind);
  }

  // ------------------------------------------------------------------------------------------
  // The mixture and its exact diffused score (oldschool.gaussian_mixture.GaussianMixture)
  // ------------------------------------------------------------------------------------------

  const LOG_2PI = Math.log(2 * Math.PI);

  // Per component k at one time (m = alpha(t), s2 = sigma(t)^2): the eigenvalues m^2 lam_k + s2
  // of its covariance and log w_k - 1/2 (log det + D log 2 pi). mixture: the JSON of explorer.py
  // (weights (K,), means (K, 2), eigvals (K, 2), eigvecs (K, 2, 2) with Sigma_k = U diag U^T).
  function component_terms(mixture, m, s2) {
    return mixture.weights.map((w, k) => {
      const v0 = m * m * mixture.eigvals[k][0] + s2, v1 = m * m * mixture.eigvals[k][1] + s2;
      return { v0: v0, v1: v1, log_c: Math.log(w) - 0.5 * (Math.log(v0) + Math.log(v1) + 2 * LOG_2PI) };
    });
  }

  // grad_x log p_t(x) for the 2-D points xs (Float64Array of 2N, x then y), written into out:
  // -sum_k r_k C_k^{-1} (x - m mu_k), r_k = p_t(k | x) (GaussianMixture.score).
  function score(mixture, path, t, xs, out) {
    const m = path.alpha(t), s = path.sigma(t);
    const terms = component_terms(mixture, m, s * s), K = terms.length;
    // Per component, flat: m mu_k, U_k (columns u0, u1), 1 / eigenvalues, log constant.
    const c = new Float64Array(9 * K);
    for (let k = 0; k < K; k++) {
      const U = mixture.eigvecs[k], o = 9 * k;
      c[o] = m * mixture.means[k][0]; c[o + 1] = m * mixture.means[k][1];
      c[o + 2] = U[0][0]; c[o + 3] = U[1][0]; c[o + 4] = U[0][1]; c[o + 5] = U[1][1];
      c[o + 6] = 1 / terms[k].v0; c[o + 7] = 1 / terms[k].v1; c[o + 8] = terms[k].log_c;
    }
    const logj = new Float64Array(K), px = new Float64Array(K), py = new Float64Array(K);
    const n = xs.length / 2;
    for (let i = 0; i < n; i++) {
      const x = xs[2 * i], y = xs[2 * i + 1];
      let top = -Infinity;
      for (let k = 0, o = 0; k < K; k++, o += 9) {
        const dx = x - c[o], dy = y - c[o + 1];
        const q0 = c[o + 2] * dx + c[o + 3] * dy, q1 = c[o + 4] * dx + c[o + 5] * dy; // U^T diff
        const p0 = q0 * c[o + 6], p1 = q1 * c[o + 7]; // divided by the eigenvalues
        const l = c[o + 8] - 0.5 * (q0 * p0 + q1 * p1); // log w_k N_k(x)
        logj[k] = l;
        px[k] = c[o + 2] * p0 + c[o + 4] * p1; // C_k^{-1} (x - m mu_k) = U diag(1/v) U^T diff
        py[k] = c[o + 3] * p0 + c[o + 5] * p1;
        if (l > top) top = l;
      }
      let z = 0, sx = 0, sy = 0;
      for (let k = 0; k < K; k++) {
        const r = Math.exp(logj[k] - top); // softmax, shifted by the largest term
        z += r; sx += r * px[k]; sy += r * py[k];
      }
      out[2 * i] = -sx / z;
      out[2 * i + 1] = -sy / z;
    }
    return out;
  }

  function score_fn(mixture, path) {
    return (xs, t, out) => score(mixture, path, t, xs, out);
  }

  // log p_t of coordinate j (0 or 1) at the values ys: a 1-D mixture with means m mu_kj and
  // variances m^2 Sigma_k,jj + s^2 (GaussianMixture.diffused(t).coordinate(j).log_prob).
  function coordinate_log_prob(mixture, path, t, j, ys) {
    const m = path.alpha(t), s = path.sigma(t);
    return ys.map((yv) => {
      let top = -Infinity;
      const terms = mixture.weights.map((w, k) => {
        const v = m * m * mixture.covs[k][j][j] + s * s, d = yv - m * mixture.means[k][j];
        const l = Math.log(w) - 0.5 * (d * d / v + Math.log(v) + LOG_2PI);
        if (l > top) top = l;
        return l;
      });
      return top + Math.log(terms.reduce((a, l) => a + Math.exp(l - top), 0));
    });
  }

  // log p_0 at 2-D points (the data density, for the samples panel's background).
  function log_prob(mixture, x, y) {
    const terms = component_terms(mixture, 1.0, 0.0);
    let top = -Infinity;
    const l = terms.map((c, k) => {
      const u = mixture.eigvecs[k], dx = x - mixture.means[k][0], dy = y - mixture.means[k][1];
      const p0 = u[0][0] * dx + u[1][0] * dy, p1 = u[0][1] * dx + u[1][1] * dy;
      const v = c.log_c - 0.5 * (p0 * p0 / c.v0 + p1 * p1 / c.v1);
      if (v > top) top = v;
      return v;
    });
    return top + Math.log(l.reduce((a, v) => a + Math.exp(v - top), 0));
  }

  // ------------------------------------------------------------------------------------------
  // Noise: a seeded generator in the page; the parity test passes Python's noise instead
  // ------------------------------------------------------------------------------------------

  function Generator(seed) {
    // mulberry32 uniforms and Box-Muller normals: reproducible per seed, not torch's stream.
    let a = seed >>> 0, spare = NaN, buffer = null;
    const uniform = () => {
      a = (a + 0x6d2b79f5) | 0;
      let r = Math.imul(a ^ (a >>> 15), 1 | a);
      r = (r + Math.imul(r ^ (r >>> 7), 61 | r)) ^ r;
      return ((r ^ (r >>> 14)) >>> 0) / 4294967296;
    };
    const randn = () => {
      if (spare === spare) { const v = spare; spare = NaN; return v; }
      const rad = Math.sqrt(-2 * Math.log(1 - uniform())), angle = 2 * Math.PI * uniform();
      spare = rad * Math.sin(angle);
      return rad * Math.cos(angle);
    };
    const noise = (n) => { // n standard normals, in a buffer reused between calls
      if (buffer === null || buffer.length !== n) buffer = new Float64Array(n);
      for (let i = 0; i < n; i++) buffer[i] = randn();
      return buffer;
    };
    return { uniform: uniform, randn: randn, noise: noise };
  }

  function sample(mixture, n, gen) {
    // n points of p_0: pick k ~ w, then mu_k + U_k sqrt(lam_k) z (GaussianMixture.sample).
    const xs = new Float64Array(2 * n), K = mixture.weights.length;
    for (let i = 0; i < n; i++) {
      let u = gen.uniform(), k = 0;
      while (k < K - 1 && u >= mixture.weights[k]) { u -= mixture.weights[k]; k++; }
      const z0 = gen.randn() * Math.sqrt(mixture.eigvals[k][0]);
      const z1 = gen.randn() * Math.sqrt(mixture.eigvals[k][1]);
      const U = mixture.eigvecs[k];
      xs[2 * i] = mixture.means[k][0] + U[0][0] * z0 + U[0][1] * z1;
      xs[2 * i + 1] = mixture.means[k][1] + U[1][0] * z0 + U[1][1] * z1;
    }
    return xs;
  }

  function prior_sample(path, n, gen) {
    const xs = new Float64Array(2 * n);
    for (let i = 0; i < 2 * n; i++) xs[i] = path.prior_std * gen.randn();
    return xs;
  }

  // ------------------------------------------------------------------------------------------
  // Samplers (oldschool.samplers): x is a Float64Array of 2N, updated in place and returned.
  // noise(i) gives the 2N standard normals of step i; callback(i, t_i, x_i) as in Python.
  // ------------------------------------------------------------------------------------------

  function linspace(start, end, steps) {
    // steps + 1 points from start to end, as torch.linspace computes them (from both ends).
    const ts = new Float64Array(steps + 1), step = (end - start) / steps;
    const half = Math.floor((steps + 1) / 2);
    for (let i = 0; i <= steps; i++) ts[i] = i < half ? start + step * i : end - step * (steps - i);
    return ts;
  }

  function time_grid(path, steps, t_min) {
    return linspace(path.T, t_min, steps); // T = t_0 > ... > t_steps = t_min
  }

  function forward_euler_maruyama(path, x0, steps, opts) {
    // eq. (14) from t = 0 to t_end: x <- x + f x dt + g sqrt(dt) z.
    const t_end = opts.t_end === undefined ? path.T : opts.t_end, cb = opts.callback;
    const x = x0, ts = linspace(0.0, t_end, steps);
    if (cb) cb(0, ts[0], x);
    for (let i = 0; i < steps; i++) {
      const t = ts[i], dt = ts[i + 1] - ts[i], f = path.f(t), gdt = path.g(t) * Math.sqrt(dt);
      const z = opts.noise(i);
      for (let j = 0; j < x.length; j++) x[j] = x[j] + f * x[j] * dt + gdt * z[j];
      if (cb) cb(i + 1, ts[i + 1], x);
    }
    return x;
  }

  function euler_maruyama(path, score_fn, x, steps, opts) {
    // Reverse SDE, eq. (17): x <- x + [f x - g^2 score] dt + g sqrt(|dt|) z, dt < 0;
    // the last step adds no noise (it returns the mean), as in samplers.euler_maruyama.
    const ts = time_grid(path, steps, opts.t_min), cb = opts.callback, sc = new Float64Array(x.length);
    if (cb) cb(0, ts[0], x);
    for (let i = 0; i < steps; i++) {
      const t = ts[i], dt = ts[i + 1] - ts[i], f = path.f(t), g2 = path.g2(t);
      score_fn(x, t, sc);
      for (let j = 0; j < x.length; j++) x[j] = x[j] + (f * x[j] - g2 * sc[j]) * dt;
      if (i < steps - 1) {
        const z = opts.noise(i), gdt = Math.sqrt(g2) * Math.sqrt(-dt);
        for (let j = 0; j < x.length; j++) x[j] = x[j] + gdt * z[j];
      }
      if (cb) cb(i + 1, ts[i + 1], x);
    }
    return x;
  }

  function flow_velocity(path, score_fn, x, t, sc, out) {
    // The probability-flow ODE's velocity, eq. (18): f x - 1/2 g^2 score.
    const f = path.f(t), g2 = path.g2(t);
    score_fn(x, t, sc);
    for (let j = 0; j < x.length; j++) out[j] = f * x[j] - 0.5 * g2 * sc[j];
    return out;
  }

  function ode_euler(path, score_fn, x, steps, opts) {
    // Euler on eq. (18): x <- x + v(x, t) dt.
    const ts = time_grid(path, steps, opts.t_min), cb = opts.callback;
    const sc = new Float64Array(x.length), v = new Float64Array(x.length);
    if (cb) cb(0, ts[0], x);
    for (let i = 0; i < steps; i++) {
      const dt = ts[i + 1] - ts[i];
      flow_velocity(path, score_fn, x, ts[i], sc, v);
      for (let j = 0; j < x.length; j++) x[j] = x[j] + v[j] * dt;
      if (cb) cb(i + 1, ts[i + 1], x);
    }
    return x;
  }

  function ode_heun(path, score_fn, x, steps, opts) {
    // Heun (Karras et al. 2022, Alg. 1): an Euler trial step, then the mean of both slopes.
    const ts = time_grid(path, steps, opts.t_min), cb = opts.callback, n = x.length;
    const sc = new Float64Array(n), d_cur = new Float64Array(n), d_next = new Float64Array(n);
    const x_euler = new Float64Array(n);
    if (cb) cb(0, ts[0], x);
    for (let i = 0; i < steps; i++) {
      const t = ts[i], t_next = ts[i + 1], dt = t_next - t;
      flow_velocity(path, score_fn, x, t, sc, d_cur); // slope at the start
      for (let j = 0; j < n; j++) x_euler[j] = x[j] + d_cur[j] * dt; // Euler predictor
      flow_velocity(path, score_fn, x_euler, t_next, sc, d_next); // slope at the trial end
      for (let j = 0; j < n; j++) x[j] = x[j] + 0.5 * (d_cur[j] + d_next[j]) * dt;
      if (cb) cb(i + 1, t_next, x);
    }
    return x;
  }

  const SAMPLERS = { euler_maruyama: euler_maruyama, ode_euler: ode_euler, ode_heun: ode_heun };

  function sliced_wasserstein(a, b, gen, num_projections) {
    // Sliced W2 between two equal-size 2-D clouds (metrics.sliced_wasserstein), random directions.
    const n = a.length / 2, pa = new Float64Array(n), pb = new Float64Array(n);
    let total = 0;
    for (let p = 0; p < num_projections; p++) {
      const angle = 2 * Math.PI * gen.uniform(), c = Math.cos(angle), s = Math.sin(angle);
      for (let i = 0; i < n; i++) {
        pa[i] = c * a[2 * i] + s * a[2 * i + 1];
        pb[i] = c * b[2 * i] + s * b[2 * i + 1];
      }
      pa.sort(); pb.sort();
      for (let i = 0; i < n; i++) total += (pa[i] - pb[i]) ** 2;
    }
    return Math.sqrt(total / (n * num_projections));
  }

  // ------------------------------------------------------------------------------------------
  // One setting, simulated: forward paths, reverse paths, final samples
  // ------------------------------------------------------------------------------------------

  function record(run, n_paths) {
    // Run a sampler and keep (ts, coordinate-1 paths of the first n_paths particles, final x).
    const ts = [], paths = [];
    const x = run((i, t, xi) => {
      ts.push(t);
      paths.push(Array.from(xi.subarray(0, 2 * n_paths)));
    });
    return { ts: ts, paths: paths, x: x };
  }

  const pools = new WeakMap(); // mixture -> the last seed's draws, kept while other controls move

  function draws(mixture, seed, n, steps) {
    // Everything random in one setting, drawn once per (seed, n, steps): data x0, prior noise,
    // the forward and reverse steps' noise, and fresh data for the SW distance.
    const key = [seed, n, steps].join(), last = pools.get(mixture);
    if (last && last.key === key) return last;
    const gen = Generator(seed * 7919 + 17);
    const pool = { key: key, x0: sample(mixture, n, gen), prior: gen.noise(2 * n).slice(),
                   forward: new Float64Array(steps * 2 * n), reverse: new Float64Array(steps * 2 * n) };
    for (let i = 0; i < pool.forward.length; i++) pool.forward[i] = gen.randn();
    for (let i = 0; i < pool.reverse.length; i++) pool.reverse[i] = gen.randn();
    pool.fresh = sample(mixture, n, gen);
    pools.set(mixture, pool);
    return pool;
  }

  function simulate(mixture, s) {
    // s: {kind, beta_min, ..., sampler, steps, seed, n_points, n_paths, t_min, view}.
    const path = make_sde(s.kind, s), n = s.n_points, d = draws(mixture, s.seed, n, s.steps);
    const calls = { n: 0 }, exact = score_fn(mixture, path);
    const counted = (xs, t, out) => { calls.n += 1; return exact(xs, t, out); };
    const prior = () => d.prior.map((z) => path.prior_std * z);
    const opts = (noise, cb) => ({ t_min: s.t_min, callback: cb,
                                   noise: (i) => noise.subarray(2 * n * i, 2 * n * (i + 1)) });
    const out = { path: path, settings: s };
    if (s.view === "sde_vs_ode") {
      const sde = (cb) => euler_maruyama(path, exact, prior(), s.steps, opts(d.reverse, cb));
      const ode = (cb) => ode_heun(path, exact, prior(), s.steps, opts(d.reverse, cb));
      out.left = record(sde, s.n_paths);
      out.right = record(ode, s.n_paths);
    } else {
      out.left = record((cb) => forward_euler_maruyama(path, d.x0.slice(), s.steps, opts(d.forward, cb)),
                        s.n_paths);
      out.right = record((cb) => SAMPLERS[s.sampler](path, counted, prior(), s.steps, opts(d.reverse, cb)),
                         s.n_paths);
      out.nfe = calls.n;
      out.sw = sliced_wasserstein(out.right.x, d.fresh, Generator(s.seed), 32);
    }
    return out;
  }

  // ------------------------------------------------------------------------------------------
  // Drawing on canvases
  // ------------------------------------------------------------------------------------------

  // matplotlib's magma at 9 stops, interpolated linearly.
  const MAGMA = [[0, 0, 4], [28, 16, 68], [79, 18, 123], [129, 37, 129], [181, 54, 122],
                 [229, 80, 100], [251, 135, 97], [254, 194, 135], [252, 253, 191]];

  function magma(v) {
    const u = Math.min(Math.max(v, 0), 1) * (MAGMA.length - 1);
    const i = Math.min(Math.floor(u), MAGMA.length - 2);
    const a = MAGMA[i], b = MAGMA[i + 1], w = u - i;
    return [a[0] + w * (b[0] - a[0]), a[1] + w * (b[1] - a[1]), a[2] + w * (b[2] - a[2])];
  }

  const MARGIN = { left: 34, right: 12, top: 6, bottom: 24 };

  function frame(canvas) {
    // The plotting box inside the canvas margins, and maps from data to pixels.
    const w = canvas.width - MARGIN.left - MARGIN.right, h = canvas.height - MARGIN.top - MARGIN.bottom;
    return { x: MARGIN.left, y: MARGIN.top, w: w, h: h };
  }

  function axes(ctx, box, xlim, ylim, xlabel, ylabel) {
    ctx.strokeStyle = "#444"; ctx.lineWidth = 1;
    ctx.strokeRect(box.x + 0.5, box.y + 0.5, box.w, box.h);
    ctx.fillStyle = "#333"; ctx.font = "11px sans-serif";
    ctx.textAlign = "center"; ctx.textBaseline = "top";
    [xlim[0], xlim[1]].forEach((v, i) => ctx.fillText(v.toFixed(i ? 1 : 3).replace(/\.?0+$/, "") || "0",
                                                        box.x + i * box.w, box.y + box.h + 2));
    ctx.fillText(xlabel, box.x + box.w / 2, box.y + box.h + 10);
    ctx.textAlign = "right"; ctx.textBaseline = "middle";
    [ylim[0], 0, ylim[1]].forEach((v) => ctx.fillText(String(v), box.x - 3,
      box.y + box.h * (1 - (v - ylim[0]) / (ylim[1] - ylim[0]))));
    ctx.save();
    ctx.translate(9, box.y + box.h / 2); ctx.rotate(-Math.PI / 2);
    ctx.textAlign = "center"; ctx.fillText(ylabel, 0, 0);
    ctx.restore();
  }

  function scale_of(path, t) {
    return Math.sqrt(path.alpha(t) ** 2 + path.sigma(t) ** 2); // coordinates shown / sqrt(a^2 + s^2)
  }

  const density_images = new WeakMap(); // canvas -> {key, image}: kept while only paths change

  function density_image(mixture, path, t_lo, t_hi, cols, rows, lim) {
    // An offscreen canvas of p_t(x_1 = k y) k over (t, y), k = sqrt(alpha^2 + sigma^2), magma.
    const ys = Array.from({ length: rows }, (_, r) => lim - (r + 0.5) * 2 * lim / rows);
    const image = [];
    let top = 0;
    for (let c = 0; c < cols; c++) { // one column of the density image per time
      const t = t_lo + (c + 0.5) * (t_hi - t_lo) / cols, k = scale_of(path, t);
      const log_p = coordinate_log_prob(mixture, path, t, 0, ys.map((y) => k * y));
      const col = log_p.map((l) => k * Math.exp(l));
      col.forEach((v) => { if (v > top) top = v; });
      image.push(col);
    }
    const off = document.createElement("canvas");
    off.width = cols; off.height = rows;
    const octx = off.getContext("2d"), img = octx.createImageData(cols, rows);
    for (let c = 0; c < cols; c++) for (let r = 0; r < rows; r++) {
      const rgb = magma(image[c][r] / top), o = 4 * (r * cols + c);
      img.data[o] = rgb[0]; img.data[o + 1] = rgb[1]; img.data[o + 2] = rgb[2]; img.data[o + 3] = 255;
    }
    octx.putImageData(img, 0, 0);
    return off;
  }

  function draw_paths(canvas, mixture, path, rec, lim) {
    // Coordinate 1 of the recorded paths over the exact p_t of coordinate 1, both normalized.
    const ctx = canvas.getContext("2d"), box = frame(canvas);
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    const ts = rec.ts, t_lo = Math.min(ts[0], ts[ts.length - 1]), t_hi = Math.max(ts[0], ts[ts.length - 1]);
    const cols = Math.min(box.w, 120), rows = Math.min(box.h, 100);
    const key = JSON.stringify([path.name, path.params, t_lo, t_hi, cols, rows, lim]);
    const cached = density_images.get(canvas);
    if (!cached || cached.key !== key) {
      const image = density_image(mixture, path, t_lo, t_hi, cols, rows, lim);
      density_images.set(canvas, { key: key, image: image });
    }
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(density_images.get(canvas).image, box.x, box.y, box.w, box.h);
    const px = (t) => box.x + box.w * (t - t_lo) / (t_hi - t_lo);
    const py = (y) => box.y + box.h * (lim - y) / (2 * lim);
    const scales = ts.map((t) => scale_of(path, t));
    ctx.save();
    ctx.beginPath(); ctx.rect(box.x, box.y, box.w, box.h); ctx.clip();
    ctx.strokeStyle = "rgba(255, 255, 255, 0.7)"; ctx.lineWidth = 0.8;
    const n_paths = rec.paths[0].length / 2;
    for (let p = 0; p < n_paths; p++) {
      ctx.beginPath();
      for (let i = 0; i < ts.length; i++) {
        const X = px(ts[i]), Y = py(rec.paths[i][2 * p] / scales[i]);
        if (i === 0) ctx.moveTo(X, Y); else ctx.lineTo(X, Y);
      }
      ctx.stroke();
    }
    ctx.restore();
    axes(ctx, box, [t_lo, t_hi], [-lim, lim], "t", "x\u2081 / \u221a(\u03b1\u00b2 + \u03c3\u00b2)");
  }

  const backgrounds = new WeakMap(); // canvas -> the data density image, computed once

  function draw_samples(canvas, mixture, clouds, lim) {
    // Final samples (clouds: [{x, color}]) over grey filled levels of the data density p_0.
    const ctx = canvas.getContext("2d"), box = frame(canvas);
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    if (!backgrounds.has(canvas)) {
      const n = 100, img = ctx.createImageData(n, n), dens = new Float64Array(n * n);
      let top = 0;
      for (let r = 0; r < n; r++) for (let c = 0; c < n; c++) {
        const x = -lim + (c + 0.5) * 2 * lim / n, y = lim - (r + 0.5) * 2 * lim / n;
        dens[r * n + c] = Math.exp(log_prob(mixture, x, y));
        top = Math.max(top, dens[r * n + c]);
      }
      for (let i = 0; i < n * n; i++) {
        const level = Math.floor(12 * dens[i] / top) / 12, v = 255 - 200 * level; // 12 levels
        img.data[4 * i] = img.data[4 * i + 1] = img.data[4 * i + 2] = v; img.data[4 * i + 3] = 255;
      }
      const off = document.createElement("canvas");
      off.width = n; off.height = n;
      off.getContext("2d").putImageData(img, 0, 0);
      backgrounds.set(canvas, off);
    }
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(backgrounds.get(canvas), box.x, box.y, box.w, box.h);
    ctx.save();
    ctx.beginPath(); ctx.rect(box.x, box.y, box.w, box.h); ctx.clip();
    clouds.forEach((cloud) => {
      ctx.fillStyle = cloud.color;
      for (let i = 0; i < cloud.x.length / 2; i++) {
        const X = box.x + box.w * (cloud.x[2 * i] + lim) / (2 * lim);
        const Y = box.y + box.h * (lim - cloud.x[2 * i + 1]) / (2 * lim);
        ctx.fillRect(X - 1, Y - 1, 2, 2);
      }
    });
    ctx.restore();
    axes(ctx, box, [-lim, lim], [-lim, lim], "x\u2081", "x\u2082");
  }

  // ------------------------------------------------------------------------------------------
  // The explorer: controls, three panels, redraw on every change (coalesced per frame)
  // ------------------------------------------------------------------------------------------

  const LABELS = { euler_maruyama: "reverse SDE, Euler-Maruyama", ode_euler: "ODE, Euler",
                   ode_heun: "ODE, Heun" };
  const C0 = "rgba(31, 119, 180, 0.6)", C1 = "rgba(255, 127, 14, 0.6)";

  function element(tag, attrs, parent, text) {
    const el = document.createElement(tag);
    Object.keys(attrs || {}).forEach((k) => el.setAttribute(k, attrs[k]));
    if (text !== undefined) el.textContent = text;
    if (parent) parent.appendChild(el);
    return el;
  }

  function format(v) {
    return typeof v === "number" ? String(+v.toPrecision(4)) : String(v);
  }

  function mount(rootEl, config) {
    // config: {mixture, view, controls: {name: {kind, label, options, value}}, n_paths, t_min,
    // lim (the samples' box), path_lim (the paths' y range)}.
    rootEl.textContent = "";
    rootEl.classList.add("oldschool-explorer");
    element("div", { class: "oldschool-explorer-header" }, rootEl,
            "Live version: it runs in this page (JavaScript, exact score), with or without a kernel.");
    const bar = element("div", { class: "oldschool-explorer-controls" }, rootEl);
    const inputs = {};
    Object.keys(config.controls).forEach((name) => {
      const spec = config.controls[name], label = element("label", { "data-control": name }, bar);
      element("span", { class: "name" }, label, spec.label + " ");
      let input;
      if (spec.kind === "select") {
        input = element("select", { name: name }, label);
        spec.options.forEach((o) => element("option", { value: String(o) }, input, LABELS[o] || String(o)));
        input.value = String(spec.value);
      } else {
        input = element("input", { type: "range", name: name, min: 0, max: spec.options.length - 1,
                                   step: 1, value: spec.options.indexOf(spec.value) }, label);
        const readout = element("span", { class: "value" }, label, " " + format(spec.value));
        input.addEventListener("input", () => {
          readout.textContent = " " + format(spec.options[+input.value]);
        });
      }
      inputs[name] = input;
    });
    const panels = element("div", { class: "oldschool-explorer-panels" }, rootEl);
    const panel = (w, h) => {
      const box = element("figure", { class: "oldschool-explorer-panel" }, panels);
      const title = element("figcaption", {}, box);
      const canvas = element("canvas", { width: w, height: h }, box);
      canvas.style.width = "100%";
      box.style.flex = w + " 1 0"; box.style.maxWidth = w + "px";
      return { title: title, canvas: canvas };
    };
    const left = panel(360, 250), right = panel(360, 250), samples = panel(250, 250);
    const status = element("div", { class: "oldschool-explorer-status" }, rootEl);

    const value = (name) => {
      const spec = config.controls[name], input = inputs[name];
      if (!spec) return undefined;
      return spec.kind === "select" ? (typeof spec.value === "number" ? +input.value : input.value)
                                    : spec.options[+input.value];
    };
    const settings = () => {
      const s = { view: config.view, n_paths: config.n_paths, t_min: config.t_min };
      Object.keys(config.controls).forEach((name) => { s[name] = value(name); });
      s.sampler = s.sampler || "euler_maruyama";
      return s;
    };
    let last = null, pending = false;

    function redraw() {
      pending = false;
      const s = settings(), key = JSON.stringify(s);
      if (key === last) return; // a value that did not change does not redraw
      last = key;
      const start = performance.now();
      const VE = s.kind === "VE";
      ["beta_min", "beta_max"].forEach((n) => { if (inputs[n]) inputs[n].disabled = VE; });
      ["sigma_min", "sigma_max"].forEach((n) => { if (inputs[n]) inputs[n].disabled = !VE; });
      const run = simulate(config.mixture, s);
      const name = run.path.name;
      if (s.view === "sde_vs_ode") {
        left.title.textContent = "reverse SDE, eq. (17), Euler-Maruyama";
        right.title.textContent = "probability-flow ODE, eq. (18), Heun";
        samples.title.textContent = "SDE (orange), ODE (blue)";
        draw_paths(left.canvas, config.mixture, run.path, run.left, config.path_lim);
        draw_paths(right.canvas, config.mixture, run.path, run.right, config.path_lim);
        const clouds = [{ x: run.left.x, color: C1 }, { x: run.right.x, color: C0 }];
        draw_samples(samples.canvas, config.mixture, clouds, config.lim);
      } else {
        left.title.textContent = "forward " + name;
        right.title.textContent = "reverse: " + s.sampler + ", " + s.steps + " steps";
        samples.title.textContent = "samples: SW " + run.sw.toFixed(3) + ", NFE " + run.nfe;
        draw_paths(left.canvas, config.mixture, run.path, run.left, config.path_lim);
        draw_paths(right.canvas, config.mixture, run.path, run.right, config.path_lim);
        draw_samples(samples.canvas, config.mixture, [{ x: run.right.x, color: C1 }], config.lim);
      }
      const ms = performance.now() - start;
      rootEl.dataset.redraws = String(+(rootEl.dataset.redraws || 0) + 1);
      rootEl.dataset.redrawMs = ms.toFixed(1);
      rootEl.dataset.setting = key;
      status.textContent = name + ", " + s.n_points + " particles x " + s.steps + " steps: redrawn in " +
        ms.toFixed(0) + " ms.";
    }

    const schedule = () => {
      if (pending) return;
      pending = true;
      (root.requestAnimationFrame || setTimeout)(redraw);
    };
    Object.keys(inputs).forEach((name) => {
      inputs[name].addEventListener("input", schedule);
      inputs[name].addEventListener("change", schedule);
    });
    redraw();
    return { redraw: () => { last = null; redraw(); }, inputs: inputs };
  }

  root.OldschoolExplorer = {
    GaussianPath: GaussianPath, VPSDE: VPSDE, SubVPSDE: SubVPSDE, VESDE: VESDE, LinearPath: LinearPath,
    make_sde: make_sde, score: score, score_fn: score_fn, coordinate_log_prob: coordinate_log_prob,
    log_prob: log_prob, Generator: Generator, sample: sample, prior_sample: prior_sample,
    linspace: linspace, time_grid: time_grid, forward_euler_maruyama: forward_euler_maruyama,
    euler_maruyama: euler_maruyama, ode_euler: ode_euler, ode_heun: ode_heun, SAMPLERS: SAMPLERS,
    sliced_wasserstein: sliced_wasserstein, simulate: simulate, mount: mount,
  };
})(window);
