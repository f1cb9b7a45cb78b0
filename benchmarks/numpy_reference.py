"""The benchmark's model written by hand in numpy: forward, hand-derived backward, Adam; no autograd.

It shows what the arithmetic alone costs on numpy, so the gap between it and tinygrad_attn
is the price of the engine (graph recording, one array per op, the generic backward walk).
The model is tinygrad_attn.nn.transformer.Transformer with learned positions and no dropout;
parameters and gradients are keyed by its state_dict names.

Every Linear works on the flattened tokens, (B*T, features), so each is one BLAS call.
Attention keeps the key/value heads unrepeated: the g = num_heads / num_kv_heads query heads
that share key/value head k are stacked along the query axis, (B, H_kv, g*T, hd), so one
matmul per (batch, kv head) serves the whole group, and the backward sums over the group
for free (dK = dS^T Q contracts over the g*T query rows).
"""

import math

import numpy as np

GELU_C, GELU_K = math.sqrt(2 / math.pi), 0.044715


def layer_norm(x, w, b, eps=1e-5):
    """x (N, d) -> (x_hat * w + b, cache); biased variance over the last dim."""
    mu = x.mean(-1, keepdims=True)
    xc = x - mu
    inv_sigma = 1 / np.sqrt((xc * xc).mean(-1, keepdims=True) + eps)
    x_hat = xc * inv_sigma
    return x_hat * w + b, (x_hat, inv_sigma)


def layer_norm_backward(dy, cache, w):
    """dx = (dxh - mean(dxh) - x_hat mean(dxh x_hat)) / sigma with dxh = dy * w; also dw, db."""
    x_hat, inv_sigma = cache
    dxh = dy * w
    dx = inv_sigma * (dxh - dxh.mean(-1, keepdims=True) - x_hat * (dxh * x_hat).mean(-1, keepdims=True))
    return dx, (dy * x_hat).sum(0), dy.sum(0)


def gelu(x):
    """0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3); returns (y, tanh(u))."""
    t = np.tanh(GELU_C * (x + GELU_K * (x * x * x)))  # x * x * x: x ** 3 calls pow, ~15x slower
    return 0.5 * x * (1 + t), t


def gelu_backward(dy, x, t):
    """dy * (0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2))."""
    du = GELU_C * (1 + 3 * GELU_K * x * x)
    return dy * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du)


def cross_entropy(logits, targets, ignore_index=-100):
    """Mean of -log softmax(logits)[target] over targets != ignore_index; returns (loss, dlogits).

    dlogits = (softmax - onehot(target)) / count on the counted rows, 0 on the ignored ones.
    """
    n = len(targets)
    valid = targets != ignore_index
    safe = np.where(valid, targets, 0)
    count = max(int(valid.sum()), 1)
    shifted = logits - logits.max(1, keepdims=True)
    e = np.exp(shifted)
    s = e.sum(1, keepdims=True)
    logp = shifted[np.arange(n), safe] - np.log(s[:, 0])
    loss = -float(logp[valid].sum()) / count
    d = e / s
    d[np.arange(n), safe] -= 1
    d *= (valid / count).astype(d.dtype)[:, None]
    return loss, d


class NumpyTransformer:
    """The forward and backward of the decoder, parameters in `self.params` {state_dict name: float32 array}."""

    def __init__(self, cfg, state):
        if cfg.positions != "learned" or cfg.dropout:
            raise ValueError(f"the numpy reference has learned positions and no dropout, got "
                             f"positions={cfg.positions!r}, dropout={cfg.dropout}")
        self.cfg = cfg
        names = self.parameter_names(cfg)
        missing = [n for n in names if n not in state]
        if missing:
            raise ValueError(f"state dict lacks the parameters {missing}")
        self.params = {n: np.array(state[n], dtype=np.float32) for n in names}
        T = cfg.context_length
        self.future = np.triu(np.full((T, T), -np.inf, dtype=np.float32), 1)  # added to the scores: 0 or -inf

    @staticmethod
    def parameter_names(cfg):
        names = ["tok_emb.weight", "pos_emb.weight"]
        for i in range(cfg.num_layers):
            p = f"trf_blocks.{i}."
            names += [p + "att.W_query.weight", p + "att.W_key.weight", p + "att.W_value.weight"]
            names += [p + f"att.W_{w}.bias" for w in ("query", "key", "value")] if cfg.qkv_bias else []
            names += [p + "att.out_proj.weight", p + "att.out_proj.bias", p + "ff.layers.0.weight",
                      p + "ff.layers.0.bias", p + "ff.layers.2.weight", p + "ff.layers.2.bias",
                      p + "norm1.weight", p + "norm1.bias", p + "norm2.weight", p + "norm2.bias"]
        return names + ["final_norm.weight", "final_norm.bias", "out_head.weight"]

    def _linear(self, x, name):
        """x (N, in) @ weight.T (+ bias) -> (N, out)."""
        y = x @ self.params[name + ".weight"].T
        bias = self.params.get(name + ".bias")
        return y if bias is None else y + bias

    def _linear_backward(self, dy, x, name, grads):
        """Store dweight = dy^T x (and dbias = sum dy); return dx = dy @ weight."""
        grads[name + ".weight"] = dy.T @ x
        if name + ".bias" in self.params:
            grads[name + ".bias"] = dy.sum(0)
        return dy @ self.params[name + ".weight"]

    def loss_and_grads(self, idx, targets):
        """idx, targets (B, T) int64 -> (mean cross-entropy, {name: gradient})."""
        cfg, P = self.cfg, self.params
        B, T = idx.shape
        d, H, Hk = cfg.d_model, cfg.num_heads, cfg.num_kv_heads
        hd, g = d // H, H // Hk
        scale = 1 / math.sqrt(hd)

        # ----- forward, keeping what the backward needs -----
        x = (P["tok_emb.weight"][idx] + P["pos_emb.weight"][:T]).reshape(B * T, d)  # (BT, d)
        saved = []
        for i in range(cfg.num_layers):
            p = f"trf_blocks.{i}."
            h, ln1 = layer_norm(x, P[p + "norm1.weight"], P[p + "norm1.bias"])
            q = self._linear(h, p + "att.W_query").reshape(B, T, Hk, g, hd)  # query head k*g + j -> [k, j]
            q = q.transpose(0, 2, 3, 1, 4).reshape(B, Hk, g * T, hd)  # (B, Hk, g*T, hd): a group's queries stacked
            k = self._linear(h, p + "att.W_key").reshape(B, T, Hk, hd).transpose(0, 2, 1, 3)  # (B, Hk, T, hd)
            v = self._linear(h, p + "att.W_value").reshape(B, T, Hk, hd).transpose(0, 2, 1, 3)  # (B, Hk, T, hd)
            s = (q @ k.transpose(0, 1, 3, 2)).reshape(B, Hk, g, T, T) * scale  # (B, Hk, g, T, T)
            s += self.future[:T, :T]
            s -= s.max(-1, keepdims=True)
            np.exp(s, out=s)
            s /= s.sum(-1, keepdims=True)
            att = s.reshape(B, Hk, g * T, T)  # the attention weights
            o = att @ v  # (B, Hk, g*T, hd)
            o = o.reshape(B, Hk, g, T, hd).transpose(0, 3, 1, 2, 4).reshape(B * T, d)  # (BT, d): heads side by side
            x = x + self._linear(o, p + "att.out_proj")
            h2, ln2 = layer_norm(x, P[p + "norm2.weight"], P[p + "norm2.bias"])
            u = self._linear(h2, p + "ff.layers.0")  # (BT, 4d)
            gu, t = gelu(u)
            x = x + self._linear(gu, p + "ff.layers.2")
            saved.append((h, ln1, q, k, v, att, o, h2, ln2, u, gu, t))
        xf, lnf = layer_norm(x, P["final_norm.weight"], P["final_norm.bias"])
        logits = xf @ P["out_head.weight"].T  # (BT, V)
        loss, dlogits = cross_entropy(logits, targets.reshape(-1))

        # ----- backward, the layers in reverse -----
        grads = {"out_head.weight": dlogits.T @ xf}
        dx, grads["final_norm.weight"], grads["final_norm.bias"] = layer_norm_backward(
            dlogits @ P["out_head.weight"], lnf, P["final_norm.weight"])
        for i in reversed(range(cfg.num_layers)):
            p = f"trf_blocks.{i}."
            h, ln1, q, k, v, att, o, h2, ln2, u, gu, t = saved[i]
            # x_out = x_mid + ff(norm2(x_mid))
            du = gelu_backward(self._linear_backward(dx, gu, p + "ff.layers.2", grads), u, t)
            dh2 = self._linear_backward(du, h2, p + "ff.layers.0", grads)
            dln, grads[p + "norm2.weight"], grads[p + "norm2.bias"] = layer_norm_backward(
                dh2, ln2, P[p + "norm2.weight"])
            dx = dx + dln
            # x_mid = x_in + out_proj(attention(norm1(x_in)))
            do = self._linear_backward(dx, o, p + "att.out_proj", grads)  # (BT, d)
            do = do.reshape(B, T, Hk, g, hd).transpose(0, 2, 3, 1, 4).reshape(B, Hk, g * T, hd)
            datt = do @ v.transpose(0, 1, 3, 2)  # (B, Hk, g*T, T)
            dv = att.transpose(0, 1, 3, 2) @ do  # (B, Hk, T, hd): summed over the group
            ds = att * (datt - (datt * att).sum(-1, keepdims=True)) * scale  # softmax backward, then the scale
            dq = ds @ k  # (B, Hk, g*T, hd)
            dk = ds.transpose(0, 1, 3, 2) @ q  # (B, Hk, T, hd)
            dq = dq.reshape(B, Hk, g, T, hd).transpose(0, 3, 1, 2, 4).reshape(B * T, d)
            dk = dk.transpose(0, 2, 1, 3).reshape(B * T, Hk * hd)
            dv = dv.transpose(0, 2, 1, 3).reshape(B * T, Hk * hd)
            dh = (self._linear_backward(dq, h, p + "att.W_query", grads)
                  + self._linear_backward(dk, h, p + "att.W_key", grads)
                  + self._linear_backward(dv, h, p + "att.W_value", grads))
            dln, grads[p + "norm1.weight"], grads[p + "norm1.bias"] = layer_norm_backward(
                dh, ln1, P[p + "norm1.weight"])
            dx = dx + dln
        dtok = np.zeros_like(P["tok_emb.weight"])
        np.add.at(dtok, idx.reshape(-1), dx)  # repeated tokens add up
        dpos = np.zeros_like(P["pos_emb.weight"])
        dpos[:T] = dx.reshape(B, T, d).sum(0)
        grads["tok_emb.weight"], grads["pos_emb.weight"] = dtok, dpos
        return loss, grads


class Adam:
    """torch.optim.Adam's update, in place on the arrays of `params` {name: array}."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        self.params, self.lr, self.betas, self.eps, self.t = params, lr, betas, eps, 0
        self.m = {n: np.zeros_like(p) for n, p in params.items()}
        self.v = {n: np.zeros_like(p) for n, p in params.items()}

    def step(self, grads):
        self.t += 1
        beta1, beta2 = self.betas
        step_size = self.lr / (1 - beta1 ** self.t)
        root_bias2 = math.sqrt(1 - beta2 ** self.t)
        for n, p in self.params.items():
            g, m, v = grads[n], self.m[n], self.v[n]
            m += (1 - beta1) * (g - m)
            v *= beta2
            v += (1 - beta2) * g * g
            p -= step_size * m / (np.sqrt(v) / root_bias2 + self.eps)


class NumpySide:
    """A side of the race (the interface described in autograd_side.py), with the backward by hand."""

    def __init__(self, model_cfg, state, lr):
        self.model = NumpyTransformer(model_cfg, state)
        self.opt = Adam(self.model.params, lr)

    def prepare(self, idx, targets):
        return idx, targets

    def loss_and_grads(self, batch):
        return self.model.loss_and_grads(*batch)

    def step(self, batch):
        loss, grads = self.model.loss_and_grads(*batch)
        self.opt.step(grads)
        return loss
