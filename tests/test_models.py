"""isskit.sampling.models and .datasets: architectures, Cohen checkpoints, factories, data."""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

pytestmark = pytest.mark.torch

from isskit.sampling import models  # noqa: E402
from isskit.sampling.datasets import DigitsDataset, load_dataset  # noqa: E402
from isskit.sampling.models import (  # noqa: E402
    NormalizeLayer,
    build_model,
    default_model,
    load_checkpoint,
    load_factory,
    weights_sha256,
)


def _cohen_resnet_keys(depth):
    """State-dict keys of Cohen et al.'s archs/cifar_resnet.py at this depth, from its layout.

    Stem conv1/bn1; three stages layer1..3 of (depth - 2) / 6 BasicBlocks (conv1, bn1,
    conv2, bn2), a downsample (0: 1x1 conv, 1: batch norm) on the first block of stages 2
    and 3 only (widths 16 -> 32 -> 64); fc.
    """
    bn = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    keys = ["conv1.weight"] + [f"bn1.{p}" for p in bn]
    for stage in (1, 2, 3):
        for b in range((depth - 2) // 6):
            pre = f"layer{stage}.{b}."
            keys += [pre + "conv1.weight"] + [pre + f"bn1.{p}" for p in bn]
            keys += [pre + "conv2.weight"] + [pre + f"bn2.{p}" for p in bn]
            if stage > 1 and b == 0:
                keys += [pre + "downsample.0.weight"] + [pre + f"downsample.1.{p}" for p in bn]
    return [*keys, "fc.weight", "fc.bias"]


def _randomise_bn(model, gen):
    # Fresh batch norms are identities; random statistics make the outputs depend on them.
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=gen))
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)


def test_normalize_layer():
    layer = NormalizeLayer((0.1, 0.2, 0.3), (0.5, 0.25, 2.0))
    x = torch.rand(4, 3, 5, 5)
    expected = (x - torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)) / torch.tensor(
        [0.5, 0.25, 2.0]).view(1, 3, 1, 1)
    torch.testing.assert_close(layer(x), expected, rtol=0, atol=0)
    assert layer.state_dict() == {}  # as Cohen et al.'s: nothing in the checkpoint
    with pytest.raises(ValueError, match="std"):
        NormalizeLayer((0.0,), (0.0,))


@pytest.mark.parametrize("depth", [20, 110])
def test_cifar_resnet_has_cohen_layout_and_size(depth):
    model = build_model(f"cifar_resnet{depth}")
    assert isinstance(model[0], NormalizeLayer)
    assert list(model[1].state_dict()) == _cohen_resnet_keys(depth)
    n_params = sum(p.numel() for p in model.parameters())
    # ResNet-110 for CIFAR-10: 1,730,714 parameters (He et al. 2016 report "1.7M"; counted
    # by hand from the layout in _cohen_resnet_keys: stem 464, stage 1 84,096, stage 2
    # 330,048, stage 3 1,315,456, fc 650). ResNet-20: 272,474 ("0.27M").
    assert n_params == {20: 272_474, 110: 1_730_714}[depth]
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ValueError, match="depth"):
        models.CifarResNet(21)


def test_resnet50_is_torchvision_with_imagenet_normalisation():
    model = build_model("resnet50")
    torch.testing.assert_close(model[0].mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))
    torch.testing.assert_close(model[0].std.flatten(), torch.tensor([0.229, 0.224, 0.225]))
    # torchvision's ResNet-50: 25,557,032 parameters (its model card).
    assert sum(p.numel() for p in model.parameters()) == 25_557_032
    assert "layer4.2.conv3.weight" in model[1].state_dict()


@pytest.mark.parametrize("prefix", ["1.", "1.module.", "", "module."])
def test_cohen_checkpoint_loads_as_is(tmp_path, prefix):
    gen = torch.Generator().manual_seed(0)
    net = build_model("cifar_resnet20")
    with torch.no_grad():
        _randomise_bn(net, gen)
    state = {prefix + k: v for k, v in net[1].state_dict().items()}
    path = tmp_path / "checkpoint.pth.tar"
    if prefix.startswith("1."):
        # As Cohen et al.'s train.py saves it: epoch, arch, state_dict, optimizer.
        opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
        torch.save({"epoch": 90, "arch": "cifar_resnet20", "state_dict": state,
                    "optimizer": opt.state_dict()}, path)
        loaded = load_checkpoint(path)
    else:
        torch.save(state, path)
        loaded = load_checkpoint(path, "cifar_resnet20")
    x = torch.rand(3, 3, 32, 32, generator=gen)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), net(x), rtol=0, atol=0)
    import hashlib

    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert loaded.description.endswith(f"checkpoint sha256 {sha}")
    assert (loaded.arch, loaded.num_classes, loaded.dataset) == ("cifar_resnet20", 10, "cifar10")


def test_checkpoint_with_normalisation_buffers(tmp_path):
    net = build_model("cifar_resnet20")
    state = {"1." + k: v for k, v in net[1].state_dict().items()}
    good = dict(state, **{"0.means": torch.tensor([0.4914, 0.4822, 0.4465]),
                          "0.sds": torch.tensor([0.2023, 0.1994, 0.2010])})
    torch.save({"arch": "cifar_resnet20", "state_dict": good}, tmp_path / "good.pt")
    load_checkpoint(tmp_path / "good.pt")
    bad = dict(state, **{"0.means": torch.tensor([0.5, 0.5, 0.5])})
    torch.save({"arch": "cifar_resnet20", "state_dict": bad}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="normalisation layer has means"):
        load_checkpoint(tmp_path / "bad.pt")


def test_checkpoint_errors(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        load_checkpoint(missing, "cifar_resnet110")
    small = build_model("cifar_resnet20")
    torch.save({"arch": "cifar_resnet20",
                "state_dict": {"1." + k: v for k, v in small[1].state_dict().items()}},
               tmp_path / "r20.pt")
    with pytest.raises(ValueError, match="differs from the checkpoint's arch"):
        load_checkpoint(tmp_path / "r20.pt", "cifar_resnet110")
    # Same weights, no arch recorded: the mismatch shows missing keys by name.
    torch.save(small[1].state_dict(), tmp_path / "plain20.pt")
    with pytest.raises(ValueError, match=r"does not fit arch 'cifar_resnet110'.*missing keys: "
                                         r"layer1\.3\.conv1\.weight"):
        load_checkpoint(tmp_path / "plain20.pt", "cifar_resnet110")
    state = small[1].state_dict()
    state["conv1.weight"] = torch.zeros(16, 3, 5, 5)
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "shape.pt")
    with pytest.raises(ValueError, match=r"unexpected keys: extra\.weight.*shape mismatches: "
                                         r"conv1\.weight"):
        load_checkpoint(tmp_path / "shape.pt", "cifar_resnet20")
    with pytest.raises(ValueError, match="names no 'arch'"):
        load_checkpoint(tmp_path / "plain20.pt")
    with pytest.raises(ValueError, match="not known"):
        load_checkpoint(tmp_path / "plain20.pt", "vgg16")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="could not be read"):
        load_checkpoint(tmp_path / "junk.pt", "cifar_resnet20")
    # A text file makes torch.load fail with a bare pickle opcode ("101"): the message must
    # still say what the file should have been.
    (tmp_path / "notes.txt").write_text("hello\n")
    with pytest.raises(ValueError, match=r"could not be read by torch.load \(\w+Error: .*"
                                         r"expected a file written by torch.save"):
        load_checkpoint(tmp_path / "notes.txt", "cifar_resnet20")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="neither a state_dict"):
        load_checkpoint(tmp_path / "list.pt", "cifar_resnet20")


def test_num_classes_follows_the_checkpoint(tmp_path):
    net = build_model("cifar_resnet20", num_classes=100)
    torch.save(net[1].state_dict(), tmp_path / "c100.pt")
    loaded = load_checkpoint(tmp_path / "c100.pt", "cifar_resnet20")
    assert loaded.num_classes == 100
    assert loaded.model(torch.rand(1, 3, 32, 32)).shape == (1, 100)


def test_default_model_accuracy_on_digits():
    loaded = default_model()
    data = DigitsDataset("test")
    with torch.no_grad():
        pred = loaded.model(data.images).argmax(1).numpy()
    # data/default_model/README.md: clean test accuracy 0.9889 = 355 / 359, printed by
    # data/train_default.py when it wrote model.pt.
    assert int((pred == np.asarray(data.targets)).sum()) == 355
    assert loaded.arch == "digits_cnn" and "sha256" in loaded.description


def test_weights_sha256_sees_every_weight():
    net = build_model("digits_cnn")
    before = weights_sha256(net)
    assert weights_sha256(net) == before
    with torch.no_grad():
        net[1].fc.bias[3] += 1e-6
    assert weights_sha256(net) != before


def test_load_factory(tmp_path, monkeypatch):
    (tmp_path / "my_models.py").write_text(textwrap.dedent("""
        import torch
        def plain():
            torch.manual_seed(0)
            return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
        def with_classes():
            return plain(), 10
        def bad_classes():
            return plain(), 0
        def not_a_model():
            return 42
        class Zoo:
            @staticmethod
            def make():
                return plain()
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("my_models", None)
    a = load_factory("my_models:plain")
    assert a.num_classes is None and a.description.startswith("factory my_models:plain;")
    assert a.description.endswith(weights_sha256(a.model))
    b = load_factory("my_models:with_classes")
    assert b.num_classes == 10 and not b.model.training
    assert load_factory("my_models:Zoo.make").description.endswith(weights_sha256(a.model))
    for spec, match in [("my_models", "package.module:factory"),
                        ("no_such_module_xyz:f", "cannot import"),
                        ("my_models:missing", "no attribute"),
                        ("my_models:bad_classes", "num_classes"),
                        ("my_models:not_a_model", "not an nn.Module")]:
        with pytest.raises(ValueError, match=match):
            load_factory(spec)


def test_digits_dataset_matches_the_shipped_file():
    from isskit._data import data_file

    raw = np.load(data_file("digits/digits.npz"))
    data = load_dataset("digits")
    assert len(data.dataset) == 359 and data.num_classes == 10
    x, y = data.dataset[10]
    assert x.shape == (1, 8, 8) and x.dtype == torch.float32
    np.testing.assert_array_equal(x[0].numpy() * 16, raw["test_images"][10])
    assert y == raw["test_labels"][10]
    assert np.bincount(data.dataset.targets).tolist() == [36, 36, 35, 37, 36, 36, 36, 36, 35, 36]


def test_real_datasets_need_their_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "absent")):
        load_dataset("cifar10", tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="CIFAR-10 test data not found"):
        load_dataset("cifar10", tmp_path)
    with pytest.raises(ValueError, match="data root"):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match="not known"):
        load_dataset("mnist")
    (tmp_path / "val").mkdir()
    with pytest.raises(FileNotFoundError, match="ImageNet"):
        load_dataset("imagenet", tmp_path)


def test_imagenet_folder_transforms(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("n01440764", "n01443537"):
        (tmp_path / "val" / cls).mkdir(parents=True)
        for i in range(2):
            pixels = rng.integers(0, 256, size=(300, 400, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "val" / cls / f"{i}.png")
    # Two of ImageNet's 1000 synsets: their folder positions are not ImageNet's indices.
    with pytest.raises(ValueError, match="2 of them ImageNet synsets, not all 1000"):
        load_dataset("imagenet", tmp_path)
    data = load_dataset("imagenet", tmp_path, allow_partial=True)
    assert len(data.dataset) == 4 and data.num_classes == 2
    x, y = data.dataset[3]
    assert x.shape == (3, 224, 224) and y == 1
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    # Resize(256) on the short side (300 -> 256, 400 -> 341), centre crop 224: the crop's
    # top-left pixel is PIL's bilinear resize at row 16, column 58 of the 256x341 image.
    img = Image.open(tmp_path / "val" / "n01443537" / "1.png").convert("RGB")
    resized = np.asarray(img.resize((341, 256), Image.BILINEAR), dtype=np.float32) / 255
    np.testing.assert_allclose(x[:, 0, 0].numpy(), resized[16, 58], atol=2 / 255)


def test_cifar10_folder_in_torchvision_layout(tmp_path, monkeypatch):
    """A folder in torchvision's CIFAR-10 layout loads as the test split, pixels in [0, 1]."""
    import pickle

    import torchvision.datasets.cifar as tv_cifar

    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    rng = np.random.default_rng(0)
    rows = rng.integers(0, 256, size=(5, 3 * 32 * 32), dtype=np.uint8)
    labels = [3, 1, 4, 1, 5]
    with (base / "test_batch").open("wb") as f:
        pickle.dump({"data": rows, "labels": labels}, f)
    with (base / "batches.meta").open("wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, f)
    # torchvision checks the md5 sums of the real files; these stand-ins share only the layout.
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *args, **kw: True)
    data = load_dataset("cifar10", tmp_path)
    assert data.num_classes == 10 and len(data.dataset) == 5
    x, y = data.dataset[2]
    assert y == 4 and tuple(x.shape) == (3, 32, 32)
    # A CIFAR-10 row is the red plane, then green, then blue, each 32 x 32 row-major.
    np.testing.assert_allclose(x.numpy(), rows[2].reshape(3, 32, 32) / 255.0, atol=1e-7)
    # ... and `isskit sample` takes it end to end with a Cohen-format checkpoint.
    from click.testing import CliRunner
    from isskit_cli.main import cli

    from isskit.store import open_store

    net = build_model("cifar_resnet20")
    ckpt = tmp_path / "ckpt.pth.tar"
    torch.save({"arch": "cifar_resnet20",
                "state_dict": {"1." + k: v for k, v in net[1].state_dict().items()}}, ckpt)
    out = tmp_path / "cifar.h5"
    res = CliRunner().invoke(cli, [
        "sample", "--arch", "cifar_resnet20", "--checkpoint", str(ckpt), "--dataset", "cifar10",
        "--data-root", str(tmp_path), "--sigma", "0.25", "--N", "20", "--batch", "10",
        "--no-progress", "--out", str(out)])
    assert res.exit_code == 0, res.output
    with open_store(out) as s:
        assert s.complete.all() and s.num_classes == 10
        np.testing.assert_array_equal(s.true_label, labels)
        np.testing.assert_array_equal(s.image_index, np.arange(5))
        assert s.labels().shape == (5, 20) and int(s.labels().max()) < 10


def test_image_folder_with_own_class_names_is_accepted(tmp_path):
    """The synset check applies to ImageNet folders only: a folder of one's own classes loads."""
    from PIL import Image

    for cls in ("cat", "dog", "fox"):
        (tmp_path / cls).mkdir()
        Image.fromarray(np.full((32, 48, 3), 7, dtype=np.uint8)).save(tmp_path / cls / "a.png")
    data = load_dataset("imagenet", tmp_path)
    assert data.num_classes == 3 and [y for _, y in data.dataset] == [0, 1, 2]
