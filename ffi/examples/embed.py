#!/usr/bin/env python3
"""Embedding protocell from Python through ctypes: train a small model, save and reload it,
generate, and step a cell colony.

    cargo build --release -p protocell-ffi
    python3 ffi/examples/embed.py [path/to/libprotocell.so]
"""
import ctypes as C
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LIB = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "release", "libprotocell.so")
lib = C.CDLL(LIB)

OK, BUFFER_TOO_SMALL = 0, 13


class ModelInfo(C.Structure):
    _fields_ = [("vocab_size", C.c_size_t), ("context_len", C.c_size_t), ("num_params", C.c_size_t)]


class StepStats(C.Structure):
    _fields_ = [("step", C.c_uint64), ("loss", C.c_double), ("lr", C.c_double),
                ("grad_norm", C.c_double), ("tokens", C.c_uint64), ("seconds", C.c_double)]


P = C.c_void_p
PP = C.POINTER(C.c_void_p)
U32P = C.POINTER(C.c_uint32)
F32P = C.POINTER(C.c_float)
SIZE = C.c_size_t
SIG = {
    "protocell_version": ([], C.c_char_p),
    "protocell_last_error": ([], C.c_char_p),
    "protocell_device_create": ([C.c_char_p, SIZE, PP], C.c_int),
    "protocell_device_destroy": ([PP], C.c_int),
    "protocell_model_create": ([P, C.c_char_p, SIZE, PP], C.c_int),
    "protocell_model_load_bytes": ([P, C.c_char_p, SIZE, PP], C.c_int),
    "protocell_model_save_bytes": ([P, P, C.c_char_p, SIZE, C.POINTER(SIZE)], C.c_int),
    "protocell_model_info": ([P, C.POINTER(ModelInfo)], C.c_int),
    "protocell_model_forward": ([P, U32P, SIZE, SIZE, F32P, SIZE], C.c_int),
    "protocell_model_generate": ([P, U32P, SIZE, C.c_float, SIZE, C.c_uint64, U32P, SIZE], C.c_int),
    "protocell_model_destroy": ([PP], C.c_int),
    "protocell_optimizer_create": ([C.c_char_p, SIZE, PP], C.c_int),
    "protocell_optimizer_destroy": ([PP], C.c_int),
    "protocell_train_step": ([P, P, U32P, U32P, SIZE, SIZE, C.POINTER(StepStats)], C.c_int),
    "protocell_colony_create": ([P, C.c_char_p, SIZE, PP], C.c_int),
    "protocell_colony_step": ([P, F32P, SIZE], C.c_int),
    "protocell_colony_get_state": ([P, F32P, SIZE], C.c_int),
    "protocell_colony_destroy": ([PP], C.c_int),
    "protocell_presyn_create": ([C.c_char_p, SIZE, SIZE, PP], C.c_int),
    "protocell_presyn_step": ([P, F32P, SIZE, F32P, SIZE], C.c_int),
    "protocell_presyn_destroy": ([PP], C.c_int),
}
for name, (args, res) in SIG.items():
    fn = getattr(lib, name)
    fn.argtypes, fn.restype = args, res


class ProtocellError(RuntimeError):
    pass


def check(status, allow=()):
    if status != OK and status not in allow:
        raise ProtocellError(f"status {status}: {lib.protocell_last_error().decode()}")
    return status


def handle(create, *args):
    h = C.c_void_p()
    check(create(*args, C.byref(h)))
    return h


def u32(values):
    return (C.c_uint32 * len(values))(*values)


print("protocell", lib.protocell_version().decode())
cpu = handle(lib.protocell_device_create, b"cpu", 3)
try:
    handle(lib.protocell_device_create, b"cuda", 4)
except ProtocellError as e:
    print("cuda:", e)

spec = b'{"arch": "gpt", "preset": "tiny", "model": {"n_layer": 1, "d_model": 32, "n_head": 2}, "seed": 1}'
model = handle(lib.protocell_model_create, cpu, spec, len(spec))
info = ModelInfo()
check(lib.protocell_model_info(model, C.byref(info)))
print(f"model: {info.num_params} parameters, vocabulary {info.vocab_size}, context {info.context_len}")

text = ("the colony grows when the cells share their energy; the colony shrinks when the "
        "pressure rises and the cells die. the mucus carries signals from cell to cell. ").encode()
ids = list(text)
opt = handle(lib.protocell_optimizer_create, b'{"lr": 0.003}', 13)
batch, seq = 4, 32
losses = []
for step in range(40):
    starts = [(step * 13 + b * 29) % (len(ids) - seq - 1) for b in range(batch)]
    x = u32([t for s in starts for t in ids[s:s + seq]])
    y = u32([t for s in starts for t in ids[s + 1:s + seq + 1]])
    st = StepStats()
    check(lib.protocell_train_step(model, opt, x, y, batch, seq, C.byref(st)))
    losses.append(st.loss)
print(f"training: loss {losses[0]:.3f} -> {losses[-1]:.3f}")
assert losses[-1] < losses[0] - 0.5, "the loss did not fall"

# errors are exceptions with the library's message
try:
    check(lib.protocell_model_forward(model, u32([1, 999]), 1, 2, (C.c_float * 512)(), 512))
    raise SystemExit("a token outside the vocabulary was accepted")
except ProtocellError as e:
    print("bad token:", e)

# save to memory (size query, then fill), load, generate
needed = C.c_size_t()
check(lib.protocell_model_save_bytes(model, opt, None, 0, C.byref(needed)), allow=(BUFFER_TOO_SMALL,))
buf = C.create_string_buffer(needed.value)
check(lib.protocell_model_save_bytes(model, opt, buf, needed.value, C.byref(needed)))
loaded = handle(lib.protocell_model_load_bytes, cpu, buf, needed.value)
prompt = u32(ids[:8])
a, b = (C.c_uint32 * 48)(), (C.c_uint32 * 48)()
check(lib.protocell_model_generate(model, prompt, 8, 0.0, 0, 7, a, 48))
check(lib.protocell_model_generate(loaded, prompt, 8, 0.0, 0, 7, b, 48))
assert list(a) == list(b), "the reloaded model generates other tokens"
print("sample:", repr(bytes(ids[:8] + list(a)).decode("utf-8", "replace")))

# a colony on its own
cj = b'{"blocks": 4, "mode": "sound", "inner_steps": 5}'
colony = handle(lib.protocell_colony_create, cpu, cj, len(cj))
drive = (C.c_float * 4)(0.8, 0.0, 0.0, 0.3)
for _ in range(10):
    check(lib.protocell_colony_step(colony, drive, 4))
state = (C.c_float * 16)()
check(lib.protocell_colony_get_state(colony, state, 16))
for i in range(4):
    print(f"  block {i}: E {state[4*i]:.3f} P {state[4*i+1]:.3f} G {state[4*i+2]:.3f} L {state[4*i+3]:.3f}")

# a bank of presynaptic terminals: driving terminal 1 again and again depletes its pool
pj = b'{"attn_topk": 2}'
bank = C.c_void_p()
check(lib.protocell_presyn_create(pj, len(pj), 6, C.byref(bank)))
spike = (C.c_float * 6)(0.2, 2.0, -1.0, 0.5, 1.5, 0.0)
out = (C.c_float * 6)()
trace = []
for _ in range(5):
    check(lib.protocell_presyn_step(bank, spike, 6, out, 6))
    trace.append(out[1])
assert trace[-1] < trace[0], f"no depletion: {trace}"
print("presynaptic output of terminal 1:", " ".join(f"{x:.3f}" for x in trace))

for destroy, h in [(lib.protocell_presyn_destroy, bank), (lib.protocell_colony_destroy, colony), (lib.protocell_model_destroy, loaded),
                   (lib.protocell_model_destroy, model), (lib.protocell_optimizer_destroy, opt),
                   (lib.protocell_device_destroy, cpu)]:
    check(destroy(C.byref(h)))
    assert h.value is None
print("ok")
