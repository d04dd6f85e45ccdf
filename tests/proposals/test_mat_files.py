import numpy as np
import pytest
import scipy.io
import torch

from sppnet.data.target import voc_to_xyxy
from sppnet.proposals import MatFileProposals, create_source, load_mat_proposals
from sppnet.proposals.mat_files import matlab_to_xyxy


def _cell(arrays):
    cell = np.empty((1, len(arrays)), dtype=object)
    for i, a in enumerate(arrays):
        cell[0, i] = a
    return cell


# Rows are (y1, x1, y2, x2), 1-based inclusive, as in R-CNN's selective_search_data/*.mat.
BOXES_A = np.array([[1, 1, 30, 40], [5, 10, 20, 12], [5, 10, 20, 12], [2, 3, 2, 3]], dtype=float)
BOXES_B = np.array([[10, 20, 25, 39]], dtype=np.uint16)


@pytest.fixture
def mat_file(tmp_path):
    path = tmp_path / "voc_2007_test.mat"
    ids = np.empty((2, 1), dtype=object)
    ids[0, 0], ids[1, 0] = "000001", "000004"
    scipy.io.savemat(path, {"boxes": _cell([BOXES_A, BOXES_B]), "images": ids})
    return path


def test_reads_and_converts_to_zero_based_xyxy(mat_file):
    table = load_mat_proposals(mat_file)
    assert sorted(table) == ["000001", "000004"]
    expected = [voc_to_xyxy(x1, y1, x2, y2) for y1, x1, y2, x2 in BOXES_A.tolist()]
    np.testing.assert_array_equal(table["000001"], np.array(expected))
    assert table["000001"][0].tolist() == [0, 0, 40, 30]  # the whole 40 x 30 image
    assert table["000001"][3].tolist() == [2, 1, 3, 2]  # a single pixel: 1 x 1
    assert table["000004"].tolist() == [[19, 9, 39, 25]]


def test_source_checks_bounds_dedups_and_filters(mat_file):
    source = MatFileProposals(mat_file)
    image = torch.zeros(3, 30, 40, dtype=torch.uint8)
    boxes = source(image, "000001")
    assert boxes.dtype == torch.float32
    assert boxes.tolist() == [[0, 0, 40, 30], [9, 4, 12, 20], [2, 1, 3, 2]]  # duplicate removed
    assert MatFileProposals(mat_file, min_size=2)(image, "000001").tolist() == boxes[:2].tolist()
    assert MatFileProposals(mat_file, max_proposals=1)(image, "000001").tolist() == [[0, 0, 40, 30]]
    with pytest.raises(ValueError, match=r"000001.*inside the 39x30 image"):
        source(torch.zeros(3, 30, 39, dtype=torch.uint8), "000001")
    with pytest.raises(KeyError, match="000002"):
        source(image, "000002")


def test_source_pickles_without_its_table_and_rebuilds_from_params(mat_file):
    import pickle

    source = MatFileProposals(mat_file)
    source.boxes_by_id()
    clone = pickle.loads(pickle.dumps(source))
    assert clone._boxes is None
    assert create_source("mat_file", source.params()).params() == source.params()


def test_ids_given_when_the_file_has_none(tmp_path):
    path = tmp_path / "boxes_only.mat"
    scipy.io.savemat(path, {"boxes": _cell([BOXES_B])})
    with pytest.raises(ValueError, match="no 'images' variable"):
        load_mat_proposals(path)
    assert list(load_mat_proposals(path, ["x"])) == ["x"]
    with pytest.raises(ValueError, match="2 image ids but 1 box arrays"):
        load_mat_proposals(path, ["x", "y"])


def test_char_matrix_ids_and_empty_box_arrays(tmp_path):
    path = tmp_path / "chars.mat"
    scipy.io.savemat(
        path, {"boxes": _cell([np.zeros((0, 0)), BOXES_B]), "images": np.array(["a", "bb"])}
    )
    table = load_mat_proposals(path)
    assert list(table) == ["a", "bb"] and table["a"].shape == (0, 4)


@pytest.mark.parametrize(
    ("boxes", "message"),
    [
        (np.array([[1.0, 1.0, 5.0]]), "M x 4"),
        (np.array([[1.0, 1.0, np.nan, 4.0]]), "row 0"),
        (np.array([[1.0, 1.0, 5.0, 5.0], [4.0, 1.0, 3.0, 5.0]]), "row 1"),
    ],
)
def test_malformed_boxes_name_the_file_and_image(tmp_path, boxes, message):
    path = tmp_path / "bad.mat"
    scipy.io.savemat(path, {"boxes": _cell([boxes]), "images": _cell(["img7"])})
    with pytest.raises(ValueError, match=rf"bad\.mat.*img7.*{message}"):
        load_mat_proposals(path)


def test_unreadable_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_mat_proposals(tmp_path / "missing.mat")
    text = tmp_path / "text.mat"
    text.write_text("not a mat file at all " * 10)
    with pytest.raises(ValueError, match=r"text\.mat.*not a readable MAT file"):
        load_mat_proposals(text)
    # A MATLAB v7.3 file is HDF5 behind a MAT header with version 0x0200.
    v73 = tmp_path / "v73.mat"
    v73.write_bytes(b"MATLAB 7.3 MAT-file".ljust(116) + bytes(8) + b"\x00\x02IM" + bytes(512))
    with pytest.raises(ValueError, match=r"v7\.3"):
        load_mat_proposals(v73)
    wrong = tmp_path / "wrong.mat"
    scipy.io.savemat(wrong, {"rois": _cell([BOXES_B])})
    with pytest.raises(ValueError, match="no 'boxes' variable"):
        load_mat_proposals(wrong)


def test_matlab_to_xyxy_matches_the_voc_conversion():
    rows = np.array([[3.0, 7.0, 9.0, 20.0]])
    assert matlab_to_xyxy(rows).tolist() == [list(voc_to_xyxy(7.0, 3.0, 20.0, 9.0))]
