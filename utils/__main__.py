"""``python -m utils``: the main job on the built-in synthetic dataset (offline by default).

Extracts (and caches) text and image embeddings, trains early fusion, late fusion, text-only and
image-only heads, prints the results table and writes JSON, CSV and a PNG bar plot to the results folder.
Run ``python -m utils --help`` for the options (pretrained hub models are one flag away).
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m utils", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="synthetic", help="dataset name (see utils.data.names())")
    p.add_argument("--dataset-options", default="{}", help='JSON dict of loader options, e.g. \'{"n": 3000}\'')
    p.add_argument("--text", default="minilm-offline",
                   help="text extractor: alias or family:model_id, e.g. hf:sentence-transformers/all-MiniLM-L6-v2")
    p.add_argument("--image", default="random-convnext",
                   help="image extractor, e.g. timm:vit_small_patch14_dinov2.lvd142m (needs the hub) ")
    p.add_argument("--text-options", default="{}", help='JSON dict of text extractor options, e.g. \'{"pooling": "cls"}\'')
    p.add_argument("--image-options", default="{}", help='JSON dict of image extractor options, e.g. \'{"pretrained": false}\'')
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1,2")
    p.add_argument("--device", default="auto")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--embeddings-dir", default=None)
    p.add_argument("--results-dir", default=None)
    a = p.parse_args(argv)

    from .experiment import format_table, run_embedding_experiment, setup_logging

    setup_logging("INFO")
    t0 = time.perf_counter()
    seeds = [int(s) for s in a.seeds.split(",") if s.strip()]
    table = run_embedding_experiment(
        dataset=a.dataset, dataset_options=json.loads(a.dataset_options), text_extractor=a.text,
        image_extractor=a.image,
        extractor_options={"text": json.loads(a.text_options), "image": json.loads(a.image_options)}, epochs=a.epochs, batch_size=a.batch_size, seeds=seeds if len(seeds) > 1 else seeds[0],
        data_dir=a.data_dir, embeddings_dir=a.embeddings_dir, out_dir=a.results_dir, device=a.device,
    )
    print()
    print(format_table(table))
    from .config import results_dir

    out = results_dir(a.results_dir)
    print(f"\nsaved: {out}/embed_model_{a.dataset}.json, .csv and .png  ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
