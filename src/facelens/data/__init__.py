"""Dataset readers: turn public face datasets in their published layouts into :class:`DatasetIndex` objects.

Use :func:`create_dataset` with a registry name (see :data:`DATASETS`)::

    from facelens.data import create_dataset

    index = create_dataset("utkface", "/data/utkface").load()
    print(len(index.samples), "samples,", len(index.skipped), "skipped")

Registered readers: ``utkface``, ``celeba``, ``adience``, ``fairface``, ``fgnet``, ``lfw``. Readers never
open the images. Several of these datasets are licensed for non-commercial research only; facelens ships
none of their data.
"""

from __future__ import annotations

from facelens.data.adience import AdienceReader, parse_adience_age
from facelens.data.base import (
    DATASETS,
    DatasetIndex,
    DatasetReader,
    FaceSample,
    SkippedEntry,
    create_dataset,
    register_dataset,
)
from facelens.data.celeba import CelebAReader
from facelens.data.fairface import FAIRFACE_RACES, FairFaceReader, parse_fairface_age
from facelens.data.fgnet import FGNetReader, parse_fgnet_name
from facelens.data.lfw import LFWReader
from facelens.data.utkface import UTKFaceReader, parse_utkface_name

__all__ = [
    "DATASETS",
    "FAIRFACE_RACES",
    "AdienceReader",
    "CelebAReader",
    "DatasetIndex",
    "DatasetReader",
    "FGNetReader",
    "FaceSample",
    "FairFaceReader",
    "LFWReader",
    "SkippedEntry",
    "UTKFaceReader",
    "create_dataset",
    "parse_adience_age",
    "parse_fairface_age",
    "parse_fgnet_name",
    "parse_utkface_name",
    "register_dataset",
]
