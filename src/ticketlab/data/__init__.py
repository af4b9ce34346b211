"""Datasets for ticketlab: small image / signal classification sets held in memory as tensors.

    from ticketlab.data import load_dataset
    ds = load_dataset("mnist", val_size=5000, split_seed=0)
    ds.train.x.shape   # torch.Size([55000, 1, 28, 28]), float32, normalised

Datasets (`list_datasets()`):

* mnist — LeCun, Cortes & Burges, http://yann.lecun.com/exdb/mnist/ (LeCun et al. 1998)
* fashion-mnist — Xiao, Rasul & Vollgraf 2017, arXiv:1708.07747
* kmnist — Clanuwat et al. 2018, arXiv:1812.01718
* cifar10 — Krizhevsky 2009, "Learning Multiple Layers of Features from Tiny Images"
* mnist1d — Greydanus 2020, arXiv:2011.14439 (generated offline, no files)
* digits — scikit-learn's bundled 8x8 digits (UCI, Alpaydin & Kaynak 1998; no files)

Files live in `resolve_data_dir()/<name>/` under their original names and are checked against
their canonical md5 on every load; `fetch(name)` downloads them (`ticketlab data fetch NAME`).
Modules: `registry` (names, constants, data folder), `_checksums` (md5 table, mirrors, file
acceptance), `idx` (IDX parsing), `cifar` (safe CIFAR-10 unpickling), `generated` (mnist1d,
digits), `load` (load_dataset, dataset_status), `fetch` (downloads).
"""

from ticketlab.data.fetch import fetch
from ticketlab.data.load import dataset_status, load_dataset
from ticketlab.data.registry import Dataset, Split, list_datasets, resolve_data_dir

__all__ = ["Dataset", "Split", "dataset_status", "fetch", "list_datasets", "load_dataset", "resolve_data_dir"]
