"""Single convolution layers of ImageNet networks at full size: the compiler's cost and
the counted cycles, on a memory the size of ConvPIM's (48 GB of 1024 x 1024 crossbars:
393,216; FloatPIM's 8,192 holds only the smallest).

    python bench/conv_layers.py [--json FILE] [--run-max-ops N]

Each layer is Conv (+ bias) -> Relu reading the network's input (the host places the
windows; layers over computed feature maps: bench/cnn.py). Records as
bench/scale.py's: case, compile_s, peak_rss_mb, uop_bytes, micro_ops_executed, cycles,
crossbars, count_s, run_s, verified. The sample layer (3 x 16 x 16 -> 8) is also run and
verified bit for bit.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from scale import CONVPIM_CROSSBARS, measure, print_row  # noqa: E402

from samples.make_onnx_samples import conv_relu  # noqa: E402

# name: input shape, output channels, kernel, stride, pad (as the networks define them)
LAYERS = {
    "sample_conv_relu": ((1, 3, 16, 16), 8, 3, 1, 1),
    "alexnet_conv1": ((1, 3, 224, 224), 96, 11, 4, 0),
    "vgg19_conv1_1": ((1, 3, 224, 224), 64, 3, 1, 1),
    "resnet50_conv1": ((1, 3, 224, 224), 64, 7, 2, 3),
    "resnet50_res2_3x3": ((1, 64, 56, 56), 64, 3, 1, 1),
    "resnet50_res5_3x3": ((1, 512, 7, 7), 512, 3, 1, 1),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", help="write the records here")
    parser.add_argument("--run-max-ops", type=int, default=50_000,
                        help="execute and verify programs of at most this many micro-ops")
    args = parser.parse_args()
    records = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        arch = tmp / "convpim.toml"
        arch.write_text(f"max_crossbars = {CONVPIM_CROSSBARS}\n")
        for name, (shape, channels, kernel, stride, pad) in LAYERS.items():
            model = conv_relu(shape, channels, kernel, stride, pad)
            run_max = args.run_max_ops if name.startswith("sample") else 0
            records.append(measure(name, model, tmp, run_max, ("--arch", str(arch))))
            print_row(records[-1])
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=2) + "\n")


if __name__ == "__main__":
    main()
