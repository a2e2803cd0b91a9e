#!/usr/bin/env python3
"""Independent check of the golden fixtures (Python standard library only).

Re-reads every .safetensors file under FIXTURE_DIR with a from-scratch parser (format:
8-byte LE header length, padded JSON header, tensors packed in order), recomputes each
case in float64 from the recorded inputs and compares with what libtorch wrote.

usage: verify_fixtures.py [FIXTURE_DIR]   (default tests/NormLab.Tests/Fixtures)
"""
import json
import math
import os
import struct
import sys

RTOL, ATOL = 2e-4, 2e-5


def load(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack_from("<Q", blob, 0)
    assert n % 8 == 0, f"{path}: header length {n} not a multiple of 8"
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    assert all(isinstance(v, str) for v in meta.values()), "metadata values must be strings"
    data = blob[8 + n:]
    tensors, expect = {}, 0
    for name, info in header.items():  # json keeps file order
        b, e = info["data_offsets"]
        assert b == expect, f"{path}:{name}: gap or overlap at {b} (expected {expect})"
        expect = e
        count = math.prod(info["shape"])
        fmt, size = {"F32": ("f", 4), "I64": ("q", 8)}[info["dtype"]]
        assert e - b == count * size, f"{path}:{name}: size mismatch"
        tensors[name] = (list(struct.unpack_from(f"<{count}{fmt}", data, b)), info["shape"], info["dtype"])
    assert expect == len(data), f"{path}: trailing bytes"
    return meta, tensors


class Checker:
    def __init__(self):
        self.failures, self.checks, self.worst = [], 0, 0.0

    def close(self, where, got, want, rtol=RTOL, atol=ATOL):
        got, want = list(got), list(want)
        self.checks += 1
        if len(got) != len(want):
            self.failures.append(f"{where}: length {len(got)} != {len(want)}")
            return
        for i, (g, w) in enumerate(zip(got, want)):
            err = abs(g - w)
            tol = atol + rtol * abs(w)
            if tol > 0:
                self.worst = max(self.worst, err / tol)
            if not err <= atol + rtol * abs(w):
                self.failures.append(f"{where}[{i}]: got {g!r}, want {w!r}")
                return


def channel_groups(x, shape):
    """Per channel, the flat indices of its elements (channel = dim 1)."""
    n, c = shape[0], shape[1]
    inner = math.prod(shape[2:]) if len(shape) > 2 else 1
    return [[(i * c + ch) * inner + k for i in range(n) for k in range(inner)] for ch in range(c)]


def bn_step(x, dy, shape, w, b, eps, use_batch_stats, rm, rv):
    groups = channel_groups(x, shape)
    y, dx = [0.0] * len(x), [0.0] * len(x)
    dw, db, means, uvars = [], [], [], []
    for ch, idx in enumerate(groups):
        m = len(idx)
        if use_batch_stats:
            mean = sum(x[i] for i in idx) / m
            var = sum((x[i] - mean) ** 2 for i in idx) / m
        else:
            mean, var = rm[ch], rv[ch]
        means.append(mean)
        uvars.append(var * m / (m - 1) if use_batch_stats and m > 1 else float("nan"))
        inv = 1.0 / math.sqrt(var + eps)
        xhat = {i: (x[i] - mean) * inv for i in idx}
        g = w[ch] if w else 1.0
        for i in idx:
            y[i] = g * xhat[i] + (b[ch] if b else 0.0)
        sdy = sum(dy[i] for i in idx)
        sdyx = sum(dy[i] * xhat[i] for i in idx)
        dw.append(sdyx)
        db.append(sdy)
        for i in idx:
            if use_batch_stats:
                dx[i] = g * inv / m * (m * dy[i] - sdy - xhat[i] * sdyx)
            else:
                dx[i] = g * inv * dy[i]
    return y, dx, dw, db, means, uvars


def check_batchnorm(c, name, meta, t):
    shape = [int(s) for s in meta["shape"].split(",")]
    eps = float(meta["eps"])
    mom = None if meta["momentum"] == "none" else float(meta["momentum"])
    affine, track = meta["affine"] == "true", meta["track_running_stats"] == "true"
    steps = int(meta["steps"])
    C = shape[1]
    w = t["weight"][0] if affine else None
    b = t["bias"][0] if affine else None
    if affine:
        c.close(f"{name}:weight in [0.5,1.5)", [min(max(v, 0.5), 1.5) for v in w], w, 0, 0)
    rm, rv, nbt = [0.0] * C, [1.0] * C, 0
    expected_names = {"weight", "bias"} if affine else set()
    for s in [str(i) for i in range(1, steps + 1)] + ["e"]:
        x, dy = t[f"x.{s}"][0], t[f"dy.{s}"][0]
        assert t[f"x.{s}"][1] == shape
        training = s != "e"
        use_batch = training or not track
        y, dx, dw, db, means, uvars = bn_step(x, dy, shape, w, b, eps, use_batch, rm, rv)
        c.close(f"{name}:y.{s}", t[f"y.{s}"][0], y)
        c.close(f"{name}:dx.{s}", t[f"dx.{s}"][0], dx, atol=1e-4)
        names = [f"x.{s}", f"dy.{s}", f"y.{s}", f"dx.{s}"]
        if affine:
            c.close(f"{name}:dweight.{s}", t[f"dweight.{s}"][0], dw, atol=1e-4)
            c.close(f"{name}:dbias.{s}", t[f"dbias.{s}"][0], db, atol=1e-4)
            names += [f"dweight.{s}", f"dbias.{s}"]
        if track and training:
            nbt += 1
            f = (1.0 / nbt) if mom is None else mom
            rm = [(1 - f) * r + f * m for r, m in zip(rm, means)]
            rv = [(1 - f) * r + f * v for r, v in zip(rv, uvars)]
            c.close(f"{name}:running_mean.{s}", t[f"running_mean.{s}"][0], rm)
            c.close(f"{name}:running_var.{s}", t[f"running_var.{s}"][0], rv)
            got_n = t[f"num_batches_tracked.{s}"]
            assert got_n[1] == [] and got_n[2] == "I64", f"{name}: num_batches_tracked must be an I64 scalar"
            c.close(f"{name}:num_batches_tracked.{s}", got_n[0], [nbt], 0, 0)
            names += [f"running_mean.{s}", f"running_var.{s}", f"num_batches_tracked.{s}"]
        expected_names.update(names)
    assert set(t) == expected_names, f"{name}: tensors {sorted(set(t) ^ expected_names)} unexpected/missing"


def check_optim(c, name, meta, t):
    opt, lr, wd = meta["optimizer"], float(meta["lr"]), float(meta["weight_decay"])
    p = list(t["p.0"][0])
    buf, m, v = None, [0.0] * len(p), [0.0] * len(p)
    steps = int(meta["steps"])
    for s in range(1, steps + 1):
        g = list(t[f"g.{s}"][0])
        if opt == "SGD":
            mom, damp, nest = float(meta["momentum"]), float(meta["dampening"]), meta["nesterov"] == "true"
            if wd:
                g = [gi + wd * pi for gi, pi in zip(g, p)]
            if mom:
                buf = list(g) if buf is None else [mom * bi + (1 - damp) * gi for bi, gi in zip(buf, g)]
                g = [gi + mom * bi for gi, bi in zip(g, buf)] if nest else buf
            p = [pi - lr * gi for pi, gi in zip(p, g)]
        else:
            b1, b2, eps = float(meta["beta1"]), float(meta["beta2"]), float(meta["eps"])
            if opt == "AdamW":
                p = [pi * (1 - lr * wd) for pi in p]
            elif wd:
                g = [gi + wd * pi for gi, pi in zip(g, p)]
            m = [b1 * mi + (1 - b1) * gi for mi, gi in zip(m, g)]
            v = [b2 * vi + (1 - b2) * gi * gi for vi, gi in zip(v, g)]
            bc1, bc2 = 1 - b1 ** s, 1 - b2 ** s
            p = [pi - lr / bc1 * mi / (math.sqrt(vi) / math.sqrt(bc2) + eps) for pi, mi, vi in zip(p, m, v)]
        c.close(f"{name}:p.{s}", t[f"p.{s}"][0], p, rtol=1e-5, atol=1e-6)


def conv2d(x, xs, w, ws, bias, stride, pad):
    n, cin, h, wd = xs
    cout, _, kh, kw = ws
    oh, ow = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    y = []
    for i in range(n):
        for o in range(cout):
            for r in range(oh):
                for q in range(ow):
                    acc = bias[o] if bias else 0.0
                    for ci in range(cin):
                        for a in range(kh):
                            for bb in range(kw):
                                hh, ww = r * stride - pad + a, q * stride - pad + bb
                                if 0 <= hh < h and 0 <= ww < wd:
                                    acc += x[((i * cin + ci) * h + hh) * wd + ww] * w[((o * cin + ci) * kh + a) * kw + bb]
                    y.append(acc)
    return y, [n, cout, oh, ow]


def conv2d_grads(x, xs, w, ws, dy, stride, pad):
    """d/dx and d/dw of sum(y*dy), from the same loops as conv2d: each product x*w in output y gives
    dx += w*dy and dw += x*dy (one pass, not a unit perturbation per value)."""
    n, cin, h, wd = xs
    cout, _, kh, kw = ws
    oh, ow = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    dx, dw = [0.0] * len(x), [0.0] * len(w)
    for i in range(n):
        for o in range(cout):
            for r in range(oh):
                for q in range(ow):
                    g = dy[((i * cout + o) * oh + r) * ow + q]
                    for ci in range(cin):
                        for a in range(kh):
                            for bb in range(kw):
                                hh, ww = r * stride - pad + a, q * stride - pad + bb
                                if 0 <= hh < h and 0 <= ww < wd:
                                    xi, wi = ((i * cin + ci) * h + hh) * wd + ww, ((o * cin + ci) * kh + a) * kw + bb
                                    dx[xi] += w[wi] * g
                                    dw[wi] += x[xi] * g
    return dx, dw


def pool2d(x, xs, k, stride, pad, kind):
    n, ch, h, wd = xs
    oh, ow = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1
    y, dmap = [], []
    for i in range(n):
        for cc in range(ch):
            for r in range(oh):
                for q in range(ow):
                    cells = [((i * ch + cc) * h + hh) * wd + ww
                             for hh in range(r * stride - pad, r * stride - pad + k)
                             for ww in range(q * stride - pad, q * stride - pad + k)
                             if 0 <= hh < h and 0 <= ww < wd]
                    if kind == "max":
                        j = max(cells, key=lambda z: x[z])
                        y.append(x[j])
                        dmap.append([(j, 1.0)])
                    else:
                        y.append(sum(x[z] for z in cells) / (k * k))  # count_include_pad
                        dmap.append([(z, 1.0 / (k * k)) for z in cells])
    return y, [n, ch, oh, ow], dmap


def check_layer(c, name, meta, t):
    mod = meta["module"]
    x, xs = t["x"][0], t["x"][1]
    if mod in ("CrossEntropyLoss", "MSELoss"):
        tgt = t["target"][0]
        if mod == "CrossEntropyLoss":
            n, k = xs
            loss, dx = 0.0, []
            for i in range(n):
                row = x[i * k:(i + 1) * k]
                mx = max(row)
                lse = mx + math.log(sum(math.exp(v - mx) for v in row))
                loss += (lse - row[tgt[i]]) / n
                dx += [(math.exp(v - lse) - (1.0 if j == tgt[i] else 0.0)) / n for j, v in enumerate(row)]
        else:
            loss = sum((a - b) ** 2 for a, b in zip(x, tgt)) / len(x)
            dx = [2 * (a - b) / len(x) for a, b in zip(x, tgt)]
        assert t["loss"][1] == [] and t["loss"][2] == "F32"
        c.close(f"{name}:loss", t["loss"][0], [loss], atol=1e-4)
        c.close(f"{name}:dx", t["dx"][0], dx)
        return
    dy = t["dy"][0]
    if mod == "Linear":
        w, (o, i_) = t["weight"][0], t["weight"][1]
        b = t["bias"][0] if "bias" in t else None
        n = xs[0]
        y = [sum(x[r * i_ + j] * w[q * i_ + j] for j in range(i_)) + (b[q] if b else 0.0) for r in range(n) for q in range(o)]
        dx = [sum(dy[r * o + q] * w[q * i_ + j] for q in range(o)) for r in range(n) for j in range(i_)]
        dw = [sum(dy[r * o + q] * x[r * i_ + j] for r in range(n)) for q in range(o) for j in range(i_)]
        bound = 1 / math.sqrt(i_)
        c.close(f"{name}:weight bound", [min(max(v, -bound), bound) for v in w], w, 0, 0)
        c.close(f"{name}:y", t["y"][0], y)
        c.close(f"{name}:dx", t["dx"][0], dx)
        c.close(f"{name}:dweight", t["dweight"][0], dw)
        if b:
            c.close(f"{name}:dbias", t["dbias"][0], [sum(dy[r * o + q] for r in range(n)) for q in range(o)])
    elif mod == "Conv2d":
        w, ws = t["weight"][0], t["weight"][1]
        b = t["bias"][0] if "bias" in t else None
        stride, pad = int(meta["stride"]), int(meta["padding"])
        y, ys = conv2d(x, xs, w, ws, b, stride, pad)
        assert ys == t["y"][1]
        c.close(f"{name}:y", t["y"][0], y)
        dx, dw = conv2d_grads(x, xs, w, ws, dy, stride, pad)
        c.close(f"{name}:dx", t["dx"][0], dx)
        c.close(f"{name}:dweight", t["dweight"][0], dw)
        if b:
            n, co, oh, ow = ys
            c.close(f"{name}:dbias", t["dbias"][0],
                    [sum(dy[((i * co + o) * oh) * ow + k] for i in range(n) for k in range(oh * ow)) for o in range(co)])
    elif mod in ("MaxPool2d", "AvgPool2d"):
        k, stride, pad = int(meta["kernel_size"]), int(meta["stride"]), int(meta["padding"])
        y, ys, dmap = pool2d(x, xs, k, stride, pad, "max" if mod == "MaxPool2d" else "avg")
        assert ys == t["y"][1]
        dx = [0.0] * len(x)
        for o, cells in enumerate(dmap):
            for j, wgt in cells:
                dx[j] += wgt * dy[o]
        c.close(f"{name}:y", t["y"][0], y)
        c.close(f"{name}:dx", t["dx"][0], dx)
    else:
        f, df = {
            "Sigmoid": (lambda v: 1 / (1 + math.exp(-v)), lambda v: (1 / (1 + math.exp(-v))) * (1 - 1 / (1 + math.exp(-v)))),
            "Tanh": (math.tanh, lambda v: 1 - math.tanh(v) ** 2),
            "ReLU": (lambda v: max(v, 0.0), lambda v: 1.0 if v > 0 else 0.0),
        }[mod]
        c.close(f"{name}:y", t["y"][0], [f(v) for v in x])
        c.close(f"{name}:dx", t["dx"][0], [df(v) * d for v, d in zip(x, dy)])


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "tests/NormLab.Tests/Fixtures"
    c = Checker()
    files = 0
    for group, fn in (("batchnorm", check_batchnorm), ("optim", check_optim), ("layers", check_layer)):
        d = os.path.join(root, group)
        for f in sorted(os.listdir(d)):
            if f.endswith(".safetensors"):
                meta, t = load(os.path.join(d, f))
                assert meta.get("generator") == "bench/NormLab.Peer"
                fn(c, f"{group}/{f[:-12]}", meta, t)
                files += 1
    for msg in c.failures:
        print("FAIL", msg)
    print(f"{files} files, {c.checks} comparisons, {len(c.failures)} failures, "
          f"worst error / tolerance = {c.worst:.3g}")
    return 1 if c.failures else 0


if __name__ == "__main__":
    sys.exit(main())
