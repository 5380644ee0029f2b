"""generate.py's protection: typed prompts, files kept whole, full disks, memory, one-line errors, the PNG."""

import signal
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import torch

import generate
from conftest import ROOT, assert_one_line_error, run_script
from gpt import GPT, GPTConfig


def test_interactive_continues_each_line_and_asks_again_after_unknown_characters(gpt_checkpoint, tmp_path):
    result = run_script("generate.py", "--checkpoint", gpt_checkpoint, "--interactive",
                        "--max-new-tokens", "20", cwd=tmp_path,
                        stdin="KING:\nQUEEN€\nNURSE:\n\nnever read\n")
    assert result.returncode == 0, result.stderr
    assert "KING:" in result.stdout and "NURSE:" in result.stdout and "QUEEN" not in result.stdout
    assert "never saw ['€']" in result.stderr and "Traceback" not in result.stderr
    result = run_script("generate.py", "--checkpoint", gpt_checkpoint, "--interactive",
                        cwd=tmp_path, stdin="")
    assert result.returncode == 0, result.stderr   # Ctrl-D ends it as well


def test_out_keeps_the_old_file_until_the_new_samples_are_complete(gpt_checkpoint, tmp_path):
    out = tmp_path / "samples.txt"
    out.write_text("my earlier samples\n")
    def as_at_a_terminal():   # a suite started in the background (`&`) would pass Ctrl-C on as ignored
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    process = subprocess.Popen([sys.executable, "-X", "faulthandler", str(ROOT / "generate.py"),
                                "--checkpoint", str(gpt_checkpoint), "--max-new-tokens", "10000000",
                                "--out", str(out)], preexec_fn=as_at_a_terminal,
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process.stdout.read(20)   # it is sampling
    process.send_signal(signal.SIGINT)
    try:
        assert process.wait(timeout=60) == 130
    except subprocess.TimeoutExpired:   # if it ever hangs, show where: faulthandler prints the stacks
        process.send_signal(signal.SIGABRT)
        pytest.fail("no exit 60 s after Ctrl-C; its threads:\n" + process.communicate(timeout=30)[1][-5000:])
    assert out.read_text() == "my earlier samples\n" and not (tmp_path / "samples.txt.tmp").exists()


def test_a_full_disk_under_out_keeps_the_old_file(gpt_checkpoint, tmp_path):
    resource = pytest.importorskip("resource")
    out = tmp_path / "samples.txt"
    out.write_text("my earlier samples\n")

    def no_file_past_4_kb():   # the kernel refuses the write (EFBIG) as a full disk refuses it
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
    result = subprocess.run([sys.executable, str(ROOT / "generate.py"), "--checkpoint", str(gpt_checkpoint),
                             "--max-new-tokens", "600", "--num-samples", "10", "--out", str(out)],
                            cwd=tmp_path, capture_output=True, text=True, preexec_fn=no_file_past_4_kb)
    assert_one_line_error(result, "cannot write --out", "File too large", "is unchanged")
    assert out.read_text() == "my earlier samples\n" and not (tmp_path / "samples.txt.tmp").exists()


def test_samples_printed_to_a_full_disk_are_one_line(gpt_checkpoint, tmp_path):
    with open("/dev/full", "w") as full:   # every write to it fails with ENOSPC
        result = subprocess.run([sys.executable, str(ROOT / "generate.py"),
                                 "--checkpoint", str(gpt_checkpoint), "--max-new-tokens", "50"],
                                cwd=tmp_path, stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert_one_line_error(result, "cannot write the samples", "No space left on device")


class Trap:
    def __reduce__(self):      # unpickling would call print: a stand-in for code a file could run
        return (print, ("this ran",))


MISTAKES = [   # (flags, a file to write first, what the one line says)
    (["--checkpoint", "missing.pt"], None, "no checkpoint at missing.pt; train one first"),
    (["--checkpoint", "cut.pt"], ("cut.pt", lambda c: c.read_bytes()[:500]), "not a readable checkpoint"),
    (["--checkpoint", "noise.pt"], ("noise.pt", lambda c: bytes(range(256)) * 16),
     "not a readable checkpoint"),
    (["--checkpoint", "trap.pt"], ("trap.pt", {"model": Trap()}),
     "refusing to load trap.pt: it holds Python objects"),
    (["--checkpoint", "alien.pt"], ("alien.pt", {"w": torch.zeros(2)}),
     "not a readable checkpoint of train.py"),
    (["--checkpoint", "sizes.pt"], ("sizes.pt", lambda c: {**torch.load(c), "model_args": {
        "model": "bigram", "vocab_size": 3}}), "size mismatch"),
    (["--prompt", "KING€:"], None, "never saw: ['€']"),
    (["--prompt", ""], None, "--prompt must be at least one character"),
    (["--interactive", "--show-attention"], None, "--interactive continues the lines you type"),
    (["--temperature", "-1"], None, "--temperature"),
    (["--temperature", "nan"], None, "--temperature"),
    (["--temperature", "inf"], None, "--temperature"),
    (["--top-p", "0"], None, "--top-p"),
    (["--top-p", "1.5"], None, "--top-p"),
    (["--top-k", "0"], None, "--top-k"),
    (["--num-samples", "0"], None, "--num-samples"),
    (["--max-new-tokens", "-5"], None, "--max-new-tokens"),
    (["--seed", str(2**70)], None, "--seed"),
    (["--seed", "-1"], None, "--seed"),
    (["--num-samples", "100000000000"], None, "out of memory: try a smaller --num-samples"),
    (["--out", "no/such/folder/f.txt"], None, "cannot write --out no/such/folder/f.txt"),
]


@pytest.mark.parametrize("flags, file, message", MISTAKES)
def test_user_mistakes_are_one_line(bigram_checkpoint, tmp_path, monkeypatch, flags, file, message):
    if file:
        name, contents = file
        contents = contents(bigram_checkpoint) if callable(contents) else contents
        if isinstance(contents, bytes):
            (tmp_path / name).write_bytes(contents)
        else:
            torch.save(contents, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as error:
        generate.main(["--checkpoint", str(bigram_checkpoint), "--max-new-tokens", "5", *flags])
    assert isinstance(error.value.code, str) and "\n" not in error.value.code, error.value.code
    assert (error.value.code.startswith("generate.py: error: ")
            and message in error.value.code), error.value.code


def test_an_allocation_that_fails_is_one_line_and_a_bug_still_shows_its_traceback(tmp_path):
    # A model with a long context: 200,000 samples at once need a 26 GB key cache, more than 12 GB of
    # address space allows, so the CPU allocator fails. A RuntimeError of another kind is a bug.
    config = GPTConfig(vocab_size=3, block_size=1024, n_layer=1, n_head=2, n_embd=32, dropout=0.0)
    torch.save({"model": GPT(config).state_dict(), "vocab": "abc", "model_args": {
        "model": "gpt", **{k: getattr(config, k) for k in ("vocab_size", "block_size", "n_layer", "n_head",
                                                         "n_embd", "dropout")}}}, tmp_path / "long.pt")
    result = run_script("generate.py", "--checkpoint", "long.pt", "--prompt", "a", "--num-samples", "200000",
                        "--max-new-tokens", "2", cwd=tmp_path, memory_gb=12)
    assert_one_line_error(result, "out of memory: try a smaller --num-samples")
    assert not generate.out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)"))


def test_the_png_is_a_valid_grey_image_of_every_head():
    weights = torch.rand(3, 2, 16, 16).tril()
    png = generate.attention_png(weights)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, at = {}, 8
    while at < len(png):   # every chunk: length, kind, data, and a CRC that must match
        length, kind = struct.unpack(">I4s", png[at:at + 8])
        data = png[at + 8:at + 8 + length]
        assert struct.unpack(">I", png[at + 8 + length:at + 12 + length])[0] == zlib.crc32(kind + data)
        chunks[kind], at = data, at + 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    side = 16 * 16 + 6                                                     # 16 pixels a weight, a frame
    assert (width, height, depth, colour) == (2 * side, 3 * side, 8, 0)
    pixels = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), np.uint8).reshape(height, width + 1)
    assert (pixels[:, 0] == 0).all()                                        # filter 0 on every row
    head = pixels[2 * side + 3:3 * side - 3, 1 + side + 3:1 + 2 * side - 3]   # layer 3, head 2
    assert (head[::16, ::16] == np.round(255 * (1 - weights[2, 1].numpy()))).all()
