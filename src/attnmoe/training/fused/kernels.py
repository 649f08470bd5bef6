"""The compiled (numba) kernels of the fused MLM engine; :mod:`.engine` drives them.

Every function here is compiled; their arrays follow the layout described in
:mod:`attnmoe.training.fused.engine`. Without numba (a broken install) nothing is
defined but ``HAVE_NUMBA = False``, and the engine reports itself unsupported.
"""

import math

import numpy as np

try:  # numba is a dependency, but a broken install must not break the package
    import numba
    from numba import literal_unroll

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - exercised only without numba
    HAVE_NUMBA = False


# fast-math that may reorder sums, but keeps NaN and inf meaning (a diverged
# loss must surface as NaN, not be optimised away)
_FAST = {"reassoc", "contract", "arcp", "nsz", "afn"}

if HAVE_NUMBA:

    @numba.njit(cache=True)
    def seed_stream(state, seed):  # pragma: no cover - compiled
        # splitmix64 of the seed, so nearby seeds give unrelated streams
        z = np.uint64(seed) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
        state[0] = z if z != np.uint64(0) else np.uint64(1)

    @numba.njit(cache=True)
    def dropout_masks(state, out, threshold, keep):  # pragma: no cover - compiled
        # xorshift64*, 16 bits per draw: P(drop) = threshold / 2**16
        flat = out.reshape(-1)
        n = flat.shape[0]
        z = state[0]
        limit = np.uint64(threshold)
        low16 = np.uint64(0xFFFF)
        for start in range(0, n, 4):
            z ^= z >> np.uint64(12)
            z ^= z << np.uint64(25)
            z ^= z >> np.uint64(27)
            bits = z * np.uint64(0x2545F4914F6CDD1D)
            if start + 4 <= n:
                flat[start] = 0.0 if (bits & low16) < limit else keep
                flat[start + 1] = 0.0 if ((bits >> np.uint64(16)) & low16) < limit else keep
                flat[start + 2] = 0.0 if ((bits >> np.uint64(32)) & low16) < limit else keep
                flat[start + 3] = 0.0 if (bits >> np.uint64(48)) < limit else keep
            else:
                for t in range(n - start):
                    draw = (bits >> np.uint64(16 * t)) & low16
                    flat[start + t] = 0.0 if draw < limit else keep
        state[0] = z

    @numba.njit(cache=True, fastmath=_FAST, nogil=True, error_model="numpy")
    def _mix_forward(x, rows, locs, mask_id, S, S_exp, V, A, O):  # pragma: no cover - compiled
        # gates pi[h, j] = softmax_j S[i, h, j, x_j] (x_i the mask) and o_h = sum_j pi V[j, x_j, h].
        # S_exp = exp(S - max over the (i, h) table slice): the softmax is shift-invariant,
        # so the exponentials are looked up, not recomputed per prediction. Rows are
        # whole h * dh vectors (each head's gate repeated dh times), which vectorise;
        # row views and local sums keep LLVM from assuming the arrays alias.
        # Prediction p masks location locs[p] of sentence rows[p].
        length = x.shape[1]
        hd = O.shape[1]
        n_heads = S.shape[1]
        dh = hd // n_heads
        z = np.empty(hd, O.dtype)
        acc = np.empty(hd, O.dtype)
        for p in range(rows.size):
            b, i = rows[p], locs[p]
            for o in range(hd):
                z[o] = 0.0
                acc[o] = 0.0
            for j in range(length):
                w = mask_id if j == i else x[b, j]
                table, value, gates = S_exp[i, j, w], V[j, w], A[p, j]
                for o in range(hd):
                    gates[o] = table[o]
                    z[o] += table[o]
                    acc[o] += table[o] * value[o]
            low = z[0]
            for o in range(hd):
                low = min(low, z[o])
            if low < 1e-30:  # every gate far below the table's best: shift by their own max
                for o in range(hd):
                    z[o] = 0.0
                    acc[o] = 0.0
                for hh in range(n_heads):
                    top = -np.inf
                    for j in range(length):
                        top = max(top, S[i, hh, j, mask_id if j == i else x[b, j]])
                    for j in range(length):
                        w = mask_id if j == i else x[b, j]
                        gate = math.exp(S[i, hh, j, w] - top)
                        for o in range(hh * dh, (hh + 1) * dh):
                            A[p, j, o] = gate
                            z[o] += gate
                            acc[o] += gate * V[j, w, o]
            out = O[p]
            for o in range(hd):
                z[o] = 1.0 / z[o]
                out[o] = acc[o] * z[o]
            for j in range(length):
                gates = A[p, j]
                for o in range(hd):
                    gates[o] *= z[o]

    @numba.njit(cache=True, fastmath=_FAST, nogil=True, error_model="numpy", inline="always")
    def _code_score(S, i, hh, j, w, t):  # pragma: no cover - compiled
        # a fractional word's gate score: the scores interpolated, not their exponentials
        if t == 0.0:
            return S[i, hh, j, w]
        return (1.0 - t) * S[i, hh, j, w] + t * S[i, hh, j, w + 1]

    @numba.njit(cache=True, fastmath=_FAST, nogil=True, error_model="numpy")
    def _mix_forward_codes(  # pragma: no cover - compiled
        x, frac, rows, locs, mask_id, S, S_exp, top, V, A, O
    ):
        # _mix_forward for a batch with fractional codes (x = floor of the codes, frac =
        # their fractions t): a fractional word's gate is exp((1 - t) S[.., lo] +
        # t S[.., lo + 1] - top) and its expert (1 - t) V[j, lo] + t V[j, lo + 1]; whole
        # words read the tables as _mix_forward does. The interpolated score is at most
        # the larger of its two, so the slice's max (top) still bounds it.
        length = x.shape[1]
        hd = O.shape[1]
        n_heads = S.shape[1]
        dh = hd // n_heads
        z = np.empty(hd, O.dtype)
        acc = np.empty(hd, O.dtype)
        for p in range(rows.size):
            b, i = rows[p], locs[p]
            for o in range(hd):
                z[o] = 0.0
                acc[o] = 0.0
            for j in range(length):
                w = mask_id if j == i else x[b, j]
                t = 0.0 if j == i else frac[b, j]
                gates = A[p, j]
                if t == 0.0:
                    table, value = S_exp[i, j, w], V[j, w]
                    for o in range(hd):
                        gates[o] = table[o]
                        z[o] += table[o]
                        acc[o] += table[o] * value[o]
                    continue
                low, high = V[j, w], V[j, w + 1]
                for hh in range(n_heads):
                    gate = math.exp(_code_score(S, i, hh, j, w, t) - top[i, hh])
                    for o in range(hh * dh, (hh + 1) * dh):
                        gates[o] = gate
                        z[o] += gate
                        acc[o] += gate * ((1.0 - t) * low[o] + t * high[o])
            least = z[0]
            for o in range(hd):
                least = min(least, z[o])
            if least < 1e-30:  # every gate far below the table's best: shift by their own max
                for o in range(hd):
                    z[o] = 0.0
                    acc[o] = 0.0
                for hh in range(n_heads):
                    own = -np.inf
                    for j in range(length):
                        w = mask_id if j == i else x[b, j]
                        t = 0.0 if j == i else frac[b, j]
                        own = max(own, _code_score(S, i, hh, j, w, t))
                    for j in range(length):
                        w = mask_id if j == i else x[b, j]
                        t = 0.0 if j == i else frac[b, j]
                        gate = math.exp(_code_score(S, i, hh, j, w, t) - own)
                        w_hi = w + 1 if t > 0.0 else w
                        for o in range(hh * dh, (hh + 1) * dh):
                            A[p, j, o] = gate
                            z[o] += gate
                            acc[o] += gate * ((1.0 - t) * V[j, w, o] + t * V[j, w_hi, o])
            out = O[p]
            for o in range(hd):
                z[o] = 1.0 / z[o]
                out[o] = acc[o] * z[o]
            for j in range(length):
                gates = A[p, j]
                for o in range(hd):
                    gates[o] *= z[o]

    @numba.njit(cache=True, fastmath=_FAST, nogil=True, error_model="numpy", inline="always")
    def _layer_norm(X, gamma, beta, eps, normed, out, inv):  # pragma: no cover - compiled
        # per column p: out = gamma * (X - mean) / std + beta (out may be X); inv = 1 / std
        d, n = X.shape
        mean = np.zeros(n, X.dtype)
        for k in range(d):
            for p in range(n):
                mean[p] += X[k, p]
        for p in range(n):
            mean[p] /= d
            inv[p] = 0.0
        for k in range(d):
            for p in range(n):
                inv[p] += (X[k, p] - mean[p]) ** 2
        for p in range(n):
            inv[p] = 1.0 / math.sqrt(inv[p] / d + eps)
        for k in range(d):
            for p in range(n):
                normed[k, p] = (X[k, p] - mean[p]) * inv[p]
                out[k, p] = normed[k, p] * gamma[k] + beta[k]

    @numba.njit(cache=True, fastmath=_FAST, nogil=True, error_model="numpy", inline="always")
    def _layer_norm_backward(  # pragma: no cover - compiled
        grad_out, normed, gamma, inv, g_gamma, g_beta, grad_in
    ):
        # adds to g_gamma, g_beta; writes d loss / d X to grad_in (may be grad_out)
        d, n = grad_out.shape
        s1 = np.zeros(n, grad_out.dtype)
        s2 = np.zeros(n, grad_out.dtype)
        for k in range(d):
            acc_gamma = 0.0
            acc_beta = 0.0
            for p in range(n):
                g = grad_out[k, p]
                acc_gamma += g * normed[k, p]
                acc_beta += g
                t = g * gamma[k]
                s1[p] += t
                s2[p] += t * normed[k, p]
            g_gamma[k] += acc_gamma
            g_beta[k] += acc_beta
        for p in range(n):
            s1[p] /= d
            s2[p] /= d
        for k in range(d):
            for p in range(n):
                grad_in[k, p] = inv[p] * (grad_out[k, p] * gamma[k] - s1[p] - normed[k, p] * s2[p])

    @numba.njit(cache=True, fastmath=_FAST, nogil=True, error_model="numpy")
    def _link_forward(  # pragma: no cover - compiled
        C, R, locs, drop, g1, b1, W1, c1, W2, c2, g2, b2, bert, eps, N1, H1, U, RELU, N2, INV, HF
    ):
        # feature-major (rows, P). bert: h1 = LN(R + dropout(C)); HF = LN(h1 + dropout(FF(h1))).
        # pure: HF = dropout(C)
        d, n = C.shape
        n_ff = W1.shape[0]
        if not bert:
            for k in range(d):
                for p in range(n):
                    HF[k, p] = C[k, p] * drop[k, p]
            return
        for k in range(d):
            for p in range(n):  # the masked location's own input
                HF[k, p] = R[locs[p], k] + C[k, p] * drop[k, p]
        _layer_norm(HF, g1, b1, eps, N1, H1, INV[0])
        for f in range(n_ff):
            for p in range(n):
                U[f, p] = c1[f]
            for k in range(d):
                weight = W1[f, k]
                for p in range(n):
                    U[f, p] += weight * H1[k, p]
            for p in range(n):
                RELU[f, p] = max(U[f, p], 0.0)
        for k in range(d):
            for p in range(n):
                HF[k, p] = c2[k]
            for f in range(n_ff):
                weight = W2[k, f]
                for p in range(n):
                    HF[k, p] += weight * RELU[f, p]
            for p in range(n):
                HF[k, p] = H1[k, p] + HF[k, p] * drop[d + k, p]
        _layer_norm(HF, g2, b2, eps, N2, HF, INV[1])

    @numba.njit(cache=True, fastmath=_FAST, nogil=True, error_model="numpy")
    def _softmax_loss(x, rows, locs, pred_w, mask_id, inv_total, GL):  # pragma: no cover
        # GL holds the logits; returns the mean weighted loss (pred_w[p]: prediction p's
        # loss weight), leaves d loss / d logits
        n_out = GL.shape[1]
        total = 0.0
        for p in range(rows.size):
            i = locs[p]
            target = x[rows[p], i]
            if target == mask_id:  # a missing value: seen by the others, not predicted
                for v in range(n_out):
                    GL[p, v] = 0.0
                continue
            top = GL[p, 0]
            for v in range(1, n_out):
                top = max(top, GL[p, v])
            target_logit = GL[p, target]
            z = 0.0
            for v in range(n_out):
                e = GL[p, v] - top
                GL[p, v] = math.exp(e) if e > -60.0 else 0.0
                z += GL[p, v]
            total += pred_w[p] * (math.log(z) + top - target_logit)
            scale = pred_w[p] * inv_total
            for v in range(n_out):
                GL[p, v] *= scale / z
            GL[p, target] -= scale
        return total * inv_total

    @numba.njit(cache=True, fastmath=_FAST, nogil=True, error_model="numpy")
    def _softmax_loss_codes(  # pragma: no cover - compiled
        x, frac, rows, locs, pred_w, mask_id, inv_total, GL
    ):
        # _softmax_loss with soft targets: a fractional true code (floor x, fraction t)
        # costs (1 - t) CE(x) + t CE(x + 1)
        n_out = GL.shape[1]
        total = 0.0
        for p in range(rows.size):
            i = locs[p]
            target = x[rows[p], i]
            if target == mask_id:  # a missing value: seen by the others, not predicted
                for v in range(n_out):
                    GL[p, v] = 0.0
                continue
            t = frac[rows[p], i]
            top = GL[p, 0]
            for v in range(1, n_out):
                top = max(top, GL[p, v])
            target_logit = GL[p, target]
            if t > 0.0:
                target_logit = (1.0 - t) * target_logit + t * GL[p, target + 1]
            z = 0.0
            for v in range(n_out):
                e = GL[p, v] - top
                GL[p, v] = math.exp(e) if e > -60.0 else 0.0
                z += GL[p, v]
            total += pred_w[p] * (math.log(z) + top - target_logit)
            scale = pred_w[p] * inv_total
            for v in range(n_out):
                GL[p, v] *= scale / z
            if t > 0.0:
                GL[p, target] -= scale * (1.0 - t)
                GL[p, target + 1] -= scale * t
            else:
                GL[p, target] -= scale
        return total * inv_total

    @numba.njit(cache=True, fastmath=_FAST, nogil=True, error_model="numpy")
    def _link_backward(  # pragma: no cover - compiled
        G, locs, drop, g1, W1, W2, g2, bert, N1, U, N2, INV, gR, gg1, gb1, gg2, gb2, GC, GF, GU
    ):
        # feature-major: d loss / d HF (G, overwritten) back through the link to d loss / d C (GC)
        d, n = G.shape
        length = gR.shape[0]
        n_ff = W1.shape[0]
        if not bert:
            for k in range(d):
                for p in range(n):
                    GC[k, p] = G[k, p] * drop[k, p]
            return
        _layer_norm_backward(G, N2, g2, INV[1], gg2, gb2, G)  # G: d loss / d h1 (residual path)
        for k in range(d):
            for p in range(n):
                GF[k, p] = G[k, p] * drop[d + k, p]
        for f in range(n_ff):  # feed-forward
            for p in range(n):
                GU[f, p] = 0.0
            for k in range(d):
                weight = W2[k, f]
                for p in range(n):
                    GU[f, p] += GF[k, p] * weight
            for p in range(n):
                if U[f, p] <= 0.0:
                    GU[f, p] = 0.0
            for k in range(d):
                weight = W1[f, k]
                for p in range(n):
                    G[k, p] += GU[f, p] * weight
        _layer_norm_backward(G, N1, g1, INV[0], gg1, gb1, GC)
        acc = np.empty(length)  # per location, summed in float64 before the table
        for k in range(d):
            acc[:] = 0.0
            for p in range(n):
                acc[locs[p]] += GC[k, p]
                GC[k, p] *= drop[k, p]
            for i in range(length):
                gR[i, k] += acc[i]

    @numba.njit(cache=True, fastmath=_FAST, nogil=True, error_model="numpy")
    def _mix_backward(x, rows, locs, mask_id, V, A, GO, gS, gV):  # pragma: no cover - compiled
        # d loss / d o (GO) back to the expert table and the gate scores
        length = x.shape[1]
        hd = GO.shape[1]
        n_heads = gS.shape[1]
        dh = hd // n_heads
        prod = np.empty(hd, GO.dtype)
        g_gate = np.empty((length, n_heads), GO.dtype)
        dot = np.empty(n_heads, GO.dtype)
        # consecutive predictions of one sentence share the experts of its words: sum
        # their gradients here, then add to the table once per sentence
        g_row = np.zeros((length, hd), GO.dtype)
        n_pred = rows.size
        for p in range(n_pred):
            b, i = rows[p], locs[p]
            grad = GO[p]
            for hh in range(n_heads):
                dot[hh] = 0.0
            for j in range(length):
                w = mask_id if j == i else x[b, j]
                target = gV[j, w] if j == i else g_row[j]
                value, gates = V[j, w], A[p, j]
                for o in range(hd):
                    prod[o] = grad[o] * value[o]
                    target[o] += gates[o] * grad[o]
                for hh in range(n_heads):
                    acc = prod[hh * dh]
                    for e in range(1, dh):
                        acc += prod[hh * dh + e]
                    g_gate[j, hh] = acc
                    dot[hh] += gates[hh * dh] * acc
            for j in range(length):
                w = mask_id if j == i else x[b, j]
                gates = A[p, j]
                for hh in range(n_heads):
                    gS[i, hh, j, w] += gates[hh * dh] * (g_gate[j, hh] - dot[hh])
            if p + 1 == n_pred or rows[p + 1] != b:  # the sentence's last prediction
                for j in range(length):
                    target, row = gV[j, x[b, j]], g_row[j]
                    for o in range(hd):
                        target[o] += row[o]
                        row[o] = 0.0

    @numba.njit(cache=True, fastmath=_FAST, nogil=True, error_model="numpy")
    def _mix_backward_codes(  # pragma: no cover - compiled
        x, frac, rows, locs, mask_id, V, A, GO, gS, gV
    ):
        # _mix_backward for a batch with fractional codes: a fractional word's expert
        # and gate score are (1 - t, t) mixes of two table entries, so each of their
        # gradients is split between lo and lo + 1 by (1 - t, t)
        length = x.shape[1]
        hd = GO.shape[1]
        n_heads = gS.shape[1]
        dh = hd // n_heads
        prod = np.empty(hd, GO.dtype)
        g_gate = np.empty((length, n_heads), GO.dtype)
        dot = np.empty(n_heads, GO.dtype)
        g_row = np.zeros((length, hd), GO.dtype)
        n_pred = rows.size
        for p in range(n_pred):
            b, i = rows[p], locs[p]
            grad = GO[p]
            for hh in range(n_heads):
                dot[hh] = 0.0
            for j in range(length):
                w = mask_id if j == i else x[b, j]
                t = 0.0 if j == i else frac[b, j]
                target = gV[j, w] if j == i else g_row[j]
                gates = A[p, j]
                if t == 0.0:
                    value = V[j, w]
                    for o in range(hd):
                        prod[o] = grad[o] * value[o]
                        target[o] += gates[o] * grad[o]
                else:
                    low, high = V[j, w], V[j, w + 1]
                    for o in range(hd):
                        prod[o] = grad[o] * ((1.0 - t) * low[o] + t * high[o])
                        target[o] += gates[o] * grad[o]
                for hh in range(n_heads):
                    acc = prod[hh * dh]
                    for e in range(1, dh):
                        acc += prod[hh * dh + e]
                    g_gate[j, hh] = acc
                    dot[hh] += gates[hh * dh] * acc
            for j in range(length):
                w = mask_id if j == i else x[b, j]
                t = 0.0 if j == i else frac[b, j]
                gates = A[p, j]
                for hh in range(n_heads):
                    g = gates[hh * dh] * (g_gate[j, hh] - dot[hh])
                    if t == 0.0:
                        gS[i, hh, j, w] += g
                    else:
                        gS[i, hh, j, w] += (1.0 - t) * g
                        gS[i, hh, j, w + 1] += t * g
            if p + 1 == n_pred or rows[p + 1] != b:  # the sentence's last prediction
                for j in range(length):
                    w, t, row = x[b, j], frac[b, j], g_row[j]
                    low = gV[j, w]
                    if t == 0.0:
                        for o in range(hd):
                            low[o] += row[o]
                            row[o] = 0.0
                    else:
                        high = gV[j, w + 1]
                        for o in range(hd):
                            low[o] += (1.0 - t) * row[o]
                            high[o] += t * row[o]
                            row[o] = 0.0

    @numba.njit(cache=True, fastmath=_FAST, nogil=True, error_model="numpy")
    def tables_forward(W, mask_id, scale, T):  # pragma: no cover - compiled
        # the expert form's tables: every (location, word) input, its key and value,
        # the mask's query at every location, and all gate scores
        E, P, Wq, bq, Wk, bk, Wv, bv = W[0], W[1], W[2], W[3], W[4], W[5], W[6], W[7]
        inputs, residual, queries, keys, values, scores, scores_exp, used, tops = T
        length, n_words, d = inputs.shape
        hd = values.shape[2]
        n_heads = scores.shape[1]
        dh = hd // n_heads
        for j in range(length):
            for w in range(n_words):
                for k in range(d):
                    inputs[j, w, k] = E[w, k] + P[j, k]
        flat_inputs = inputs.reshape((length * n_words, d))
        flat_keys = keys.reshape((length * n_words, hd))
        flat_values = values.reshape((length * n_words, hd))
        np.dot(flat_inputs, Wk.T, flat_keys)  # (L W, d) @ (d, h dh)
        np.dot(flat_inputs, Wv.T, flat_values)
        _add_rows(flat_keys, bk)
        _add_rows(flat_values, bv)
        for i in range(length):
            for k in range(d):
                residual[i, k] = inputs[i, mask_id, k]
            for o in range(hd):
                acc = bq[o]
                for k in range(d):
                    acc += Wq[o, k] * residual[i, k]
                queries[i, o] = acc * scale
        # gate scores and their exponentials, for the pairs the batch reads only; in
        # the tables' precision (float32 exp costs half of float64's)
        zero, lowest = scores.dtype.type(0.0), scores.dtype.type(-np.inf)
        for i in range(length):
            for hh in range(n_heads):
                top = lowest
                for j in range(length):
                    for w in range(n_words):
                        if used[j, w]:
                            acc = zero
                            for e in range(dh):
                                acc += queries[i, hh * dh + e] * keys[j, w, hh * dh + e]
                            scores[i, hh, j, w] = acc
                            top = max(top, acc)
                tops[i, hh] = top  # fractional words exponentiate their own scores from it
                for j in range(length):
                    for w in range(n_words):
                        if used[j, w]:
                            gate = math.exp(scores[i, hh, j, w] - top)
                            for e in range(dh):
                                scores_exp[i, j, w, hh * dh + e] = gate

    @numba.njit(cache=True, fastmath=_FAST, nogil=True, error_model="numpy")
    def tables_backward(g_tables, W, mask_id, scale, T, G):  # pragma: no cover - compiled
        # chain rule from the tables back to embeddings and projections (overwrites G)
        g_scores, g_values, g_residual = g_tables
        Wq, Wk, Wv = W[2], W[4], W[6]
        inputs, residual, queries, keys, used = T[0], T[1], T[2], T[3], T[7]
        gE, gP, gWq, gbq, gWk, gbk, gWv, gbv = G
        length, n_words, d = inputs.shape
        hd = g_values.shape[2]
        n_heads = g_scores.shape[1]
        dh = hd // n_heads
        n_pairs = length * n_words
        # d score[i, h, j, w] / d key[j, w, h, e] = query[i, h, e]
        g_key = np.zeros((length, n_words, hd), inputs.dtype)
        g_query = np.zeros((length, hd), inputs.dtype)
        for i in range(length):
            for hh in range(n_heads):
                for j in range(length):
                    for w in range(n_words):
                        if not used[j, w]:  # no gradient: the batch did not read it
                            continue
                        gs = g_scores[i, hh, j, w]
                        for e in range(dh):
                            o = hh * dh + e
                            g_key[j, w, o] += gs * queries[i, o]
                            g_query[i, o] += gs * keys[j, w, o]
        for i in range(length):
            for o in range(hd):
                g_query[i, o] *= scale
        flat_inputs = inputs.reshape((n_pairs, d))
        flat_g_key = g_key.reshape((n_pairs, hd))
        flat_g_values = g_values.reshape((n_pairs, hd))
        np.dot(flat_g_key.T, flat_inputs, gWk)  # (h dh, L W) @ (L W, d)
        np.dot(flat_g_values.T, flat_inputs, gWv)
        np.dot(g_query.T, residual, gWq)  # the query reads the mask's input
        _column_sums(flat_g_key, gbk)
        _column_sums(flat_g_values, gbv)
        _column_sums(g_query, gbq)
        g_in = np.dot(flat_g_key, Wk) + np.dot(flat_g_values, Wv)  # (L W, d)
        g_mask = np.dot(g_query, Wq)  # (L, d)
        gE[:] = 0.0
        gP[:] = 0.0
        for j in range(length):
            for w in range(n_words):
                row = j * n_words + w
                for k in range(d):
                    g = g_in[row, k]
                    if w == mask_id:
                        g += g_mask[j, k] + g_residual[j, k]
                    gE[w, k] += g
                    gP[j, k] += g

    @numba.njit(cache=True, nogil=True)
    def mark_used(x, mask_id, used):  # pragma: no cover - compiled
        # the (location, word) pairs whose gate scores and experts the batch reads
        used[:] = False
        for j in range(x.shape[1]):
            used[j, mask_id] = True
            for r in range(x.shape[0]):
                used[j, x[r, j]] = True

    @numba.njit(cache=True, nogil=True)
    def mark_neighbours(x, frac, used):  # pragma: no cover - compiled
        # a fractional code also reads the word above its floor
        for j in range(x.shape[1]):
            for r in range(x.shape[0]):
                if frac[r, j] > 0.0:
                    used[j, x[r, j] + 1] = True

    @numba.njit(cache=True, fastmath=_FAST, nogil=True, error_model="numpy", inline="always")
    def _add_rows(M, bias):  # pragma: no cover - compiled
        for r in range(M.shape[0]):
            for c in range(M.shape[1]):
                M[r, c] += bias[c]

    @numba.njit(cache=True, fastmath=_FAST, nogil=True, error_model="numpy", inline="always")
    def _column_sums(M, out):  # pragma: no cover - compiled
        out[:] = 0.0
        for r in range(M.shape[0]):
            for c in range(M.shape[1]):
                out[c] += M[r, c]

    @numba.njit(cache=True, fastmath=_FAST, nogil=True, error_model="numpy", inline="always")
    def _rows_of(flat, rows, n):  # pragma: no cover - compiled
        return flat[: rows * n].reshape((rows, n))

    @numba.njit(cache=True, fastmath=_FAST, nogil=True, error_model="numpy", inline="always")
    def _add_columns(M, bias):  # pragma: no cover - compiled
        for r in range(M.shape[0]):
            for c in range(M.shape[1]):
                M[r, c] += bias[r]

    @numba.njit(cache=True, fastmath=_FAST, nogil=True, error_model="numpy", inline="always")
    def _row_sums(M, out):  # pragma: no cover - compiled
        for r in range(M.shape[0]):
            acc = 0.0
            for c in range(M.shape[1]):
                acc += M[r, c]
            out[r] = acc

    @numba.njit(cache=True, fastmath=_FAST, nogil=True, error_model="numpy")
    def _mixture_to_loss_and_back(  # pragma: no cover - compiled
        x, frac, fractional, rows, locs, W, G, residual, R, columns, g_residual, pred_w, mask_id,
        inv_total, bert, eps,
    ):  # fmt: skip
        # the part shared by both paths: from the mixtures O (R[1]) through W_O, the
        # link, the output layer and the loss, and back to d loss / d O (R[3]); writes
        # the per-prediction weights' gradients G and adds the masked locations' input
        # gradient to g_residual; returns the loss share
        Wo, bo, Wout, bout = W[8], W[9], W[10], W[11]
        g1, b1, W1, c1, W2, c2, g2, b2 = W[12], W[13], W[14], W[15], W[16], W[17], W[18], W[19]
        gWo, gbo, gWout, gbout, gg1, gb1, gW1, gc1, gW2, gc2, gg2, gb2 = G
        n = rows.size  # predictions
        d, n_ff = Wo.shape[0], W1.shape[0]
        O, GL, GO = R[1][:n], R[2][:n], R[3][:n]
        C, N1 = _rows_of(columns[0], d, n), _rows_of(columns[1], d, n)
        H1, U = _rows_of(columns[2], d, n), _rows_of(columns[3], n_ff, n)
        RELU, N2 = _rows_of(columns[4], n_ff, n), _rows_of(columns[5], d, n)
        INV, HF = _rows_of(columns[6], 2, n), _rows_of(columns[7], d, n)
        GH, GF = _rows_of(columns[8], d, n), _rows_of(columns[9], d, n)
        GU, GC = _rows_of(columns[10], n_ff, n), _rows_of(columns[11], d, n)
        drop = _rows_of(columns[12], 2 * d, n)
        for a in (gg1, gb1, gg2, gb2):
            a[:] = 0.0
        np.dot(Wo, O.T, C)  # (d, h dh) @ (h dh, P)
        _add_columns(C, bo)
        _link_forward(
            C, residual, locs, drop, g1, b1, W1, c1, W2, c2, g2, b2, bert, eps, N1, H1, U, RELU,
            N2, INV, HF,
        )  # fmt: skip
        np.dot(HF.T, Wout.T, GL)  # (P, d) @ (d, V)
        _add_rows(GL, bout)
        if fractional:
            loss = _softmax_loss_codes(x, frac, rows, locs, pred_w, mask_id, inv_total, GL)
        else:
            loss = _softmax_loss(x, rows, locs, pred_w, mask_id, inv_total, GL)
        # backward: the same path in reverse; weight gradients are GEMMs over predictions
        np.dot(Wout.T, GL.T, GH)  # (d, V) @ (V, P)
        np.dot(GL.T, HF.T, gWout)
        _column_sums(GL, gbout)
        _link_backward(
            GH, locs, drop, g1, W1, W2, g2, bert, N1, U, N2, INV, g_residual, gg1, gb1, gg2, gb2,
            GC, GF, GU,
        )  # fmt: skip
        if bert:
            np.dot(GU, H1.T, gW1)  # (d_ff, P) @ (P, d)
            _row_sums(GU, gc1)
            np.dot(GF, RELU.T, gW2)
            _row_sums(GF, gc2)
        np.dot(GC.T, Wo, GO)  # (P, d) @ (d, h dh)
        np.dot(GC, O, gWo)
        _row_sums(GC, gbo)
        return loss

    @numba.njit(cache=True, fastmath=_FAST, nogil=True, error_model="numpy")
    def rows_step(  # pragma: no cover - compiled
        x, frac, fractional, rows, locs, W, G, T, R, columns, g_tables, pred_w, mask_id,
        inv_total, bert, eps,
    ):  # fmt: skip
        # forward and backward of the predictions (sentence rows[p] of x, location
        # locs[p] masked, loss weight pred_w[p]), given the tables: writes the
        # per-prediction weights' gradients G (in _ROW_GRADIENTS order) and the
        # tables'; returns the loss share. fractional: x holds the floors of codes
        # whose fractions are frac (else frac is not read and x holds word ids)
        residual, values, scores, scores_exp = T[1], T[4], T[5], T[6]
        g_scores, g_values, g_residual = g_tables
        n = rows.size  # predictions
        A, O, GO = R[0][:n], R[1][:n], R[3][:n]
        g_scores[:] = 0.0
        g_values[:] = 0.0
        g_residual[:] = 0.0
        # forward: mixture (per prediction), then W_O, link, output layer, loss and back
        if fractional:
            _mix_forward_codes(x, frac, rows, locs, mask_id, scores, scores_exp, T[8], values, A, O)
        else:
            _mix_forward(x, rows, locs, mask_id, scores, scores_exp, values, A, O)
        loss = _mixture_to_loss_and_back(
            x, frac, fractional, rows, locs, W, G, residual, R, columns, g_residual, pred_w,
            mask_id, inv_total, bert, eps,
        )  # fmt: skip
        if fractional:
            _mix_backward_codes(x, frac, rows, locs, mask_id, values, A, GO, g_scores, g_values)
        else:
            _mix_backward(x, rows, locs, mask_id, values, A, GO, g_scores, g_values)
        return loss

    # -- the token path: gates from the batch's own tokens, no (location, word) tables --

    @numba.njit(cache=True, fastmath=_FAST, nogil=True, error_model="numpy")
    def token_tables_forward(W, mask_id, scale, K):  # pragma: no cover - compiled
        # keys and values are affine in a token's input E[w] + P[j], so they split into a
        # word part E[w] Wk^T and a location part P[j] Wk^T + bk: vocabulary- and
        # length-sized products per step, summed per token when the mixture reads them.
        # Also the mask's input (the residual), scaled query, key and value at every location
        E, P, Wq, bq, Wk, bk, Wv, bv = W[0], W[1], W[2], W[3], W[4], W[5], W[6], W[7]
        word_keys, word_values, loc_keys, loc_values, residual, queries, mask_keys, mask_values = K
        length, d = residual.shape
        hd = queries.shape[1]
        positions = P[:length]
        np.dot(E, Wk.T, word_keys)  # (W, d) @ (d, h dh)
        np.dot(E, Wv.T, word_values)
        np.dot(positions, Wk.T, loc_keys)  # (L, d) @ (d, h dh)
        np.dot(positions, Wv.T, loc_values)
        _add_rows(loc_keys, bk)
        _add_rows(loc_values, bv)
        for i in range(length):
            for k in range(d):
                residual[i, k] = E[mask_id, k] + P[i, k]
        np.dot(residual, Wq.T, queries)
        for i in range(length):
            for o in range(hd):
                queries[i, o] = (queries[i, o] + bq[o]) * scale
                mask_keys[i, o] = word_keys[mask_id, o] + loc_keys[i, o]
                mask_values[i, o] = word_values[mask_id, o] + loc_values[i, o]

    @numba.njit(cache=True, fastmath=_FAST, nogil=True, error_model="numpy", inline="always")
    def _token_rows(x, frac, fractional, b, words, locations, out):  # pragma: no cover
        # out[j] = the word part of sentence b's token j (a fractional code's two words
        # interpolated) plus location j's part
        for j in range(x.shape[1]):
            w = x[b, j]
            t = frac[b, j] if fractional else 0.0
            low, loc, row = words[w], locations[j], out[j]
            if t == 0.0:
                for o in range(row.size):
                    row[o] = low[o] + loc[o]
            else:
                high = words[w + 1]
                for o in range(row.size):
                    row[o] = (1.0 - t) * low[o] + t * high[o] + loc[o]

    @numba.njit(cache=True, fastmath=_FAST, nogil=True, error_model="numpy", inline="always")
    def _scatter_rows(x, frac, fractional, b, g_rows, g_words, g_locations):  # pragma: no cover
        # _token_rows backwards: adds g_rows[j] to its word(s) and location, then zeroes it
        for j in range(x.shape[1]):
            w = x[b, j]
            t = frac[b, j] if fractional else 0.0
            low, loc, row = g_words[w], g_locations[j], g_rows[j]
            if t == 0.0:
                for o in range(row.size):
                    low[o] += row[o]
                    loc[o] += row[o]
                    row[o] = 0.0
            else:
                high = g_words[w + 1]
                for o in range(row.size):
                    low[o] += (1.0 - t) * row[o]
                    high[o] += t * row[o]
                    loc[o] += row[o]
                    row[o] = 0.0

    @numba.njit(cache=True, fastmath=_FAST, nogil=True, error_model="numpy")
    def _mix_forward_tokens(  # pragma: no cover - compiled
        x, frac, fractional, rows, locs, mask_id, n_heads, K, A, O
    ):
        # per prediction p (location i = locs[p] of sentence b = rows[p] masked): the
        # sentence's keys and values (built once per sentence), the scores q_i . k_j per
        # head (k_i the mask's), the softmax shifted by the prediction's own max, and
        # o = sum_j gate v_j. A[p, j] holds the gates repeated over each head's dh units
        word_keys, word_values, loc_keys, loc_values = K[0], K[1], K[2], K[3]
        queries, mask_keys, mask_values = K[5], K[6], K[7]
        length = x.shape[1]
        hd = O.shape[1]
        dh = hd // n_heads
        keys = np.empty((length, hd), O.dtype)
        values = np.empty((length, hd), O.dtype)
        scores = np.empty((length, n_heads), O.dtype)
        top = np.empty(n_heads, O.dtype)
        z = np.empty(hd, O.dtype)
        acc = np.empty(hd, O.dtype)
        last = -1
        for p in range(rows.size):
            b, i = rows[p], locs[p]
            if b != last:
                _token_rows(x, frac, fractional, b, word_keys, loc_keys, keys)
                _token_rows(x, frac, fractional, b, word_values, loc_values, values)
                last = b
            query = queries[i]
            for hh in range(n_heads):
                top[hh] = -np.inf
            for j in range(length):
                key = mask_keys[i] if j == i else keys[j]
                for hh in range(n_heads):
                    s = 0.0
                    for o in range(hh * dh, (hh + 1) * dh):
                        s += query[o] * key[o]
                    scores[j, hh] = s
                    top[hh] = max(top[hh], s)
            for o in range(hd):
                z[o] = 0.0
                acc[o] = 0.0
            for j in range(length):
                value = mask_values[i] if j == i else values[j]
                gates = A[p, j]
                for hh in range(n_heads):
                    gate = math.exp(scores[j, hh] - top[hh])
                    for o in range(hh * dh, (hh + 1) * dh):
                        gates[o] = gate
                for o in range(hd):
                    z[o] += gates[o]
                    acc[o] += gates[o] * value[o]
            out = O[p]
            for o in range(hd):
                z[o] = 1.0 / z[o]
                out[o] = acc[o] * z[o]
            for j in range(length):
                gates = A[p, j]
                for o in range(hd):
                    gates[o] *= z[o]

    @numba.njit(cache=True, fastmath=_FAST, nogil=True, error_model="numpy")
    def _mix_backward_tokens(  # pragma: no cover - compiled
        x, frac, fractional, rows, locs, mask_id, n_heads, K, A, GO, g_tok
    ):
        # d loss / d o (GO) back to the word and location parts of the keys and values
        # and to the queries (adds to g_tok). A sentence's token gradients are summed
        # over its predictions, then scattered to its words and locations once
        word_keys, word_values, loc_keys, loc_values = K[0], K[1], K[2], K[3]
        queries, mask_keys, mask_values = K[5], K[6], K[7]
        g_word_keys, g_word_values, g_loc_keys, g_loc_values, g_queries = g_tok[:5]
        length = x.shape[1]
        hd = GO.shape[1]
        dh = hd // n_heads
        keys = np.empty((length, hd), GO.dtype)
        values = np.empty((length, hd), GO.dtype)
        g_keys = np.zeros((length, hd), GO.dtype)
        g_values = np.zeros((length, hd), GO.dtype)
        g_mask_keys = np.zeros((length, hd), GO.dtype)
        g_mask_values = np.zeros((length, hd), GO.dtype)
        g_gate = np.empty((length, n_heads), GO.dtype)
        dot = np.empty(n_heads, GO.dtype)
        prod = np.empty(hd, GO.dtype)
        n_pred = rows.size
        last = -1
        for p in range(n_pred):
            b, i = rows[p], locs[p]
            if b != last:
                _token_rows(x, frac, fractional, b, word_keys, loc_keys, keys)
                _token_rows(x, frac, fractional, b, word_values, loc_values, values)
                last = b
            grad, query, g_query = GO[p], queries[i], g_queries[i]
            for hh in range(n_heads):
                dot[hh] = 0.0
            for j in range(length):
                value = mask_values[i] if j == i else values[j]
                target = g_mask_values[i] if j == i else g_values[j]
                gates = A[p, j]
                for o in range(hd):
                    prod[o] = grad[o] * value[o]
                    target[o] += gates[o] * grad[o]
                for hh in range(n_heads):
                    acc = prod[hh * dh]
                    for o in range(hh * dh + 1, (hh + 1) * dh):
                        acc += prod[o]
                    g_gate[j, hh] = acc
                    dot[hh] += gates[hh * dh] * acc
            for j in range(length):
                key = mask_keys[i] if j == i else keys[j]
                g_key = g_mask_keys[i] if j == i else g_keys[j]
                gates = A[p, j]
                for hh in range(n_heads):
                    g_score = gates[hh * dh] * (g_gate[j, hh] - dot[hh])
                    for o in range(hh * dh, (hh + 1) * dh):
                        g_key[o] += g_score * query[o]
                        g_query[o] += g_score * key[o]
            if p + 1 == n_pred or rows[p + 1] != b:  # the sentence's last prediction
                _scatter_rows(x, frac, fractional, b, g_keys, g_word_keys, g_loc_keys)
                _scatter_rows(x, frac, fractional, b, g_values, g_word_values, g_loc_values)
        for i in range(length):  # the mask's key and value: E[mask] + P[i]
            for o in range(hd):
                g_word_keys[mask_id, o] += g_mask_keys[i, o]
                g_loc_keys[i, o] += g_mask_keys[i, o]
                g_word_values[mask_id, o] += g_mask_values[i, o]
                g_loc_values[i, o] += g_mask_values[i, o]

    @numba.njit(cache=True, fastmath=_FAST, nogil=True, error_model="numpy")
    def tokens_step(  # pragma: no cover - compiled
        x, frac, fractional, rows, locs, n_heads, W, G, K, R, columns, g_tok, pred_w, mask_id,
        inv_total, bert, eps,
    ):  # fmt: skip
        # rows_step's work on the token path: the mixture from the batch's own tokens
        # (K: token_tables_forward's projections); writes G and the gradients of K's
        # word and location parts, queries and residual (g_tok); returns the loss share
        n = rows.size  # predictions
        A, O, GO = R[0][:n], R[1][:n], R[3][:n]
        for g in g_tok:
            g[:] = 0.0
        _mix_forward_tokens(x, frac, fractional, rows, locs, mask_id, n_heads, K, A, O)
        loss = _mixture_to_loss_and_back(
            x, frac, fractional, rows, locs, W, G, K[4], R, columns, g_tok[5], pred_w,
            mask_id, inv_total, bert, eps,
        )  # fmt: skip
        _mix_backward_tokens(x, frac, fractional, rows, locs, mask_id, n_heads, K, A, GO, g_tok)
        return loss

    @numba.njit(cache=True, fastmath=_FAST, nogil=True, error_model="numpy")
    def token_tables_backward(g_tok, W, mask_id, scale, K, G):  # pragma: no cover - compiled
        # chain rule from the word and location parts, the queries and the residual
        # back to embeddings and projections (overwrites G)
        g_word_keys, g_word_values, g_loc_keys, g_loc_values, g_queries, g_residual = g_tok
        E, P, Wq, Wk, Wv = W[0], W[1], W[2], W[4], W[6]
        residual = K[4]
        gE, gP, gWq, gbq, gWk, gbk, gWv, gbv = G
        length, d = residual.shape
        positions = P[:length]
        np.dot(g_word_keys.T, E, gWk)  # (h dh, W) @ (W, d)
        np.dot(g_word_values.T, E, gWv)
        g_pos_keys = np.dot(g_loc_keys.T, positions)  # (h dh, L) @ (L, d)
        g_pos_values = np.dot(g_loc_values.T, positions)
        for o in range(gWk.shape[0]):
            for k in range(d):
                gWk[o, k] += g_pos_keys[o, k]
                gWv[o, k] += g_pos_values[o, k]
        _column_sums(g_loc_keys, gbk)
        _column_sums(g_loc_values, gbv)
        g_query = np.empty_like(g_queries)  # the queries were scaled after the projection
        for i in range(length):
            for o in range(g_query.shape[1]):
                g_query[i, o] = g_queries[i, o] * scale
        np.dot(g_query.T, residual, gWq)
        _column_sums(g_query, gbq)
        np.dot(g_word_keys, Wk, gE)  # (W, h dh) @ (h dh, d)
        g_word_in = np.dot(g_word_values, Wv)
        g_mask_in = np.dot(g_query, Wq)  # the mask's input at each location
        g_loc_in = np.dot(g_loc_keys, Wk) + np.dot(g_loc_values, Wv)
        gP[:] = 0.0
        for w in range(gE.shape[0]):
            for k in range(d):
                gE[w, k] += g_word_in[w, k]
        for i in range(length):
            for k in range(d):
                g = g_mask_in[i, k] + g_residual[i, k]
                gE[mask_id, k] += g
                gP[i, k] = g_loc_in[i, k] + g

    @numba.njit(cache=True, fastmath=_FAST, nogil=True, error_model="numpy")
    def _adam_update(groups, hyper):  # pragma: no cover - compiled
        # torch.optim.Adam's update (L2 weight decay added to the gradient); with eps_hat,
        # eps is added to the uncorrected sqrt(v) as in Keras: eps / root_bias2 here
        lr, beta1, beta2, eps, decay, step, eps_hat = hyper
        step_size = lr / (1.0 - beta1**step)
        root_bias2 = math.sqrt(1.0 - beta2**step)
        if eps_hat > 0.0:
            eps = eps / root_bias2
        for group in literal_unroll(groups):
            weight, grad, first, second = group
            w, g, m, v = weight.reshape(-1), grad.reshape(-1), first.reshape(-1), second.reshape(-1)
            for k in range(w.size):
                gk = g[k] + decay * w[k]
                m[k] = beta1 * m[k] + (1.0 - beta1) * gk
                v[k] = beta2 * v[k] + (1.0 - beta2) * gk * gk
                w[k] -= step_size * m[k] / (math.sqrt(v[k]) / root_bias2 + eps)

    def _make_train_epoch(per_token):
        # per_token is a constant of the closure: numba prunes the other path's
        # branches, so a fresh install's first fit compiles only the path it uses

        @numba.njit(cache=True, nogil=True, error_model="numpy")
        def train_epoch(  # pragma: no cover - compiled
            tokens, token_frac, has_frac, order, per_step, copies, stride, W, G, groups, T,
            R, columns, g_tables, weights, mask_id, bert, eps, scale, state, threshold, keep,
            hyper, losses, n_heads, K, g_tok,
        ):  # fmt: skip
            # every step of one pass: batch gather, dropout, tables, rows, tables'
            # gradients, Adam. Rows: order permutes sentences, a step takes per_step of
            # them and predicts every location. Copies: order permutes (sentence,
            # location) pairs as sentence * L + location, a step takes per_step pairs.
            # An item's input is row order[.] // stride of tokens (stride L: sentences,
            # 1: every copy written out). weights: (1, L) loss weight per location, or
            # (N, L) per sentence and location. has_frac: tokens are the floors of codes
            # whose fractions are token_frac (same shape); a batch without a fractional
            # code takes the word-id path. per_token (the closure's): the token path (K,
            # g_tok: its projections and their gradients; T and g_tables are not read),
            # else the tables'.
            # Returns (steps applied, 0 | 1 non-finite loss | 2 nothing to predict)
            length = tokens.shape[1]
            max_pred = per_step if copies else per_step * length
            batch = np.empty((per_step, length), tokens.dtype)
            batch_frac = np.zeros((per_step if has_frac else 1, length), token_frac.dtype)
            rows = np.empty(max_pred, np.int64)
            locs = np.empty(max_pred, np.int64)
            pred_w = np.empty(max_pred, weights.dtype)
            sentences = np.zeros(per_step, np.int64)  # each batch row's row of weights
            per_sentence = weights.shape[0] > 1
            if not copies:
                for p in range(max_pred):
                    rows[p] = p // length
                    locs[p] = p % length
            row_grads = G[8:]
            table_grads = G[:8]
            step_hyper = hyper.copy()
            steps = 0
            for first in range(0, order.size, per_step):
                n = min(per_step, order.size - first)
                x = batch[:n]
                n_pred = n if copies else n * length
                for r in range(n):
                    item = order[first + r]
                    source = item // stride
                    for j in range(length):
                        x[r, j] = tokens[source, j]
                    if copies:
                        rows[r] = r
                        locs[r] = item % length
                    if per_sentence:  # items are sentences, or copies sentence * L + location
                        sentences[r] = item // length if copies else item
                fractional = False
                if has_frac:
                    for r in range(n):
                        source = order[first + r] // stride
                        for j in range(length):
                            batch_frac[r, j] = token_frac[source, j]
                            fractional = fractional or token_frac[source, j] > 0.0
                total = 0.0
                for p in range(n_pred):
                    pred_w[p] = weights[sentences[rows[p]], locs[p]]
                    if x[rows[p], locs[p]] != mask_id:
                        total += pred_w[p]
                if total <= 0.0:
                    return steps, 2
                if threshold > 0:
                    dropout_masks(state, columns[12][: 2 * W[8].shape[0] * n_pred], threshold, keep)
                if per_token:
                    token_tables_forward(W, mask_id, scale, K)
                    loss = tokens_step(
                        x, batch_frac[:n], fractional, rows[:n_pred], locs[:n_pred], n_heads, W,
                        row_grads, K, R, columns, g_tok, pred_w[:n_pred], mask_id, 1.0 / total,
                        bert, eps,
                    )  # fmt: skip
                else:
                    mark_used(x, mask_id, T[7])
                    if fractional:
                        mark_neighbours(x, batch_frac[:n], T[7])
                    tables_forward(W, mask_id, scale, T)
                    loss = rows_step(
                        x, batch_frac[:n], fractional, rows[:n_pred],
                        locs[:n_pred], W, row_grads, T, R, columns, g_tables, pred_w[:n_pred],
                        mask_id, 1.0 / total, bert, eps,
                    )  # fmt: skip
                losses[steps] = loss
                if not math.isfinite(loss):
                    return steps, 1
                if per_token:
                    token_tables_backward(g_tok, W, mask_id, scale, K, table_grads)
                else:
                    tables_backward(g_tables, W, mask_id, scale, T, table_grads)
                step_hyper[5] = hyper[5] + steps + 1
                _adam_update(groups, step_hyper)
                steps += 1
            return steps, 0

        return train_epoch

    train_epoch_tables = _make_train_epoch(False)
    train_epoch_tokens = _make_train_epoch(True)
