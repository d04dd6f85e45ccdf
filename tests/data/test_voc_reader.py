import logging

import pytest
import torch
from conftest import voc_xml

from sppnet.data import AnnotationError
from sppnet.data.target import xyxy_to_voc
from sppnet.data.voc import VOC_CLASSES, VOCDetection, parse_voc_xml

CLASSES = ["cat", "dog"]


def test_reads_and_converts_coordinates(make_voc):
    root = make_voc(
        [
            ("a", (20, 30), [("dog", 1, 1, 10, 5), ("cat", 11, 2, 30, 20, 1)]),
            ("b", (16, 16), []),
        ]
    )
    ds = VOCDetection(root, "train", CLASSES)
    assert ds.classes == CLASSES and ds.num_classes == 2
    assert ds.image_ids == ["a", "b"] and len(ds) == 2
    target = ds.get_target(0)
    # VOC (1, 1, 10, 5) inclusive 1-based = pixel columns 0..9, rows 0..4 -> xyxy (0, 0, 10, 5).
    assert target["boxes"].tolist() == [[0.0, 0.0, 10.0, 5.0], [10.0, 1.0, 30.0, 20.0]]
    assert target["boxes"].dtype == torch.float32
    assert target["labels"].tolist() == [2, 1]
    assert target["difficult"].tolist() == [False, True]
    assert target["iscrowd"].tolist() == [False, False]
    assert target["image_id"] == "a" and target["size"] == (20, 30)
    image, target2 = ds[0]
    assert image.shape == (3, 20, 30) and image.dtype == torch.uint8
    assert torch.equal(target2["boxes"], target["boxes"])
    empty = ds.get_target(1)
    assert empty["boxes"].shape == (0, 4) and empty["labels"].shape == (0,)
    assert ds.invalid == []


def test_get_target_is_a_copy(make_voc):
    ds = VOCDetection(make_voc([("a", (8, 8), [("cat", 1, 1, 4, 4)])]), "train", CLASSES)
    ds.get_target(0)["boxes"] += 100
    assert ds.get_target(0)["boxes"].tolist() == [[0.0, 0.0, 4.0, 4.0]]


def test_round_trip_with_writer_conversion():
    assert xyxy_to_voc((0, 0, 10, 5)) == (1, 1, 10, 5)
    with pytest.raises(ValueError, match="integer"):
        xyxy_to_voc((0.5, 0, 10, 5))


def test_default_classes_are_voc_20():
    assert len(VOC_CLASSES) == 20 and VOC_CLASSES[0] == "aeroplane"
    assert VOC_CLASSES[-1] == "tvmonitor"


def test_xmin_zero_clipped_within_tolerance(make_voc):
    root = make_voc([("a", (10, 10), [("cat", 0, 1, 10, 10)])])
    assert VOCDetection(root, "train", CLASSES).get_target(0)["boxes"].tolist() == [
        [0.0, 0.0, 10.0, 10.0]
    ]
    with pytest.raises(AnnotationError, match="outside"):
        VOCDetection(root, "train", CLASSES, box_tolerance=0)


def test_float_coordinates(make_voc):
    root = make_voc([("a", (10, 10), [("cat", 2.5, 1, 9.5, 10)])])
    assert VOCDetection(root, "train", CLASSES).get_target(0)["boxes"].tolist() == [
        [1.5, 0.0, 9.5, 10.0]
    ]


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<annotation><filename>&lol3;</filename></annotation>"""

EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE a [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<annotation><filename>&xxe;</filename></annotation>"""


@pytest.mark.parametrize(
    ("record", "match"),
    [
        (("x", (10, 10), [], "<annotation><size>"), r"x\.xml: malformed XML"),
        (("x", (10, 10), [], BILLION_LAUGHS), r"x\.xml: refused unsafe XML"),
        (("x", (10, 10), [], EXTERNAL_ENTITY), r"x\.xml: refused unsafe XML"),
        (("x", (10, 10), [], "<root/>"), "expected <annotation>"),
        (("x", (10, 10), [], voc_xml(None, [])), "no <size>"),
        (("x", (10, 10), [("bird", 1, 1, 5, 5)]), r"x\.xml, object 0 \(bird\): class 'bird'"),
        (("x", (10, 10), [("cat", 1, 1, 5, 5), ("dog", 1, 1, 12, 5)]), r"object 1 \(dog\).*out"),
        (("x", (10, 10), [("cat", 5, 1, 4, 5)]), "non-positive size"),
        (("x", (10, 10), [("cat", "one", 1, 4, 5)]), "<xmin> is 'one', not a number"),
        (("x", (10, 10), [("cat", "nan", 1, 4, 5)]), "not a finite number"),
        (("x", (10, 10), [("cat", 1, 1, 4, 5, "maybe")]), "difficult"),
        (("x", (10, 10.5), []), "<width> is '10.5', not an integer"),
        (("x", (0, 10), []), "not positive"),
        (("x", (10, 10), [], voc_xml((10, 10), [], "../../etc/passwd")), "plain file name"),
    ],
)
def test_invalid_records_raise_and_skip(make_voc, caplog, record, match):
    root = make_voc([("good", (12, 12), [("cat", 1, 1, 5, 5)]), record])
    with pytest.raises(AnnotationError, match=match):
        VOCDetection(root, "train", CLASSES)
    with caplog.at_level(logging.WARNING, logger="sppnet.data"):
        ds = VOCDetection(root, "train", CLASSES, on_invalid="skip")
    assert ds.image_ids == ["good"]
    assert len(ds.invalid) == 1
    file, reason = ds.invalid[0]
    assert file.endswith("x.xml")
    assert reason and "x.xml" in reason
    assert "skipped 1 invalid record" in caplog.text


def test_missing_image(make_voc):
    root = make_voc([("a", (10, 10), [])], image_size={"a": None})
    with pytest.raises(AnnotationError, match=r"a\.xml: image file missing.*a\.jpg"):
        VOCDetection(root, "train", CLASSES)


def test_missing_annotation_file(make_voc):
    root = make_voc([("a", (10, 10), [])])
    (root / "Annotations" / "a.xml").unlink()
    with pytest.raises(AnnotationError, match="annotation file missing"):
        VOCDetection(root, "train", CLASSES)


def test_size_disagrees(make_voc):
    root = make_voc([("a", (10, 12), [])], image_size={"a": (10, 14)})
    with pytest.raises(AnnotationError, match=r"is 10x14 \(HxW\) but the annotation says 10x12"):
        VOCDetection(root, "train", CLASSES)


def test_size_transposed_hints_exif(make_voc):
    root = make_voc([("a", (10, 12), [])], image_size={"a": (12, 10)})
    with pytest.raises(AnnotationError, match="EXIF orientation"):
        VOCDetection(root, "train", CLASSES)


def test_unverified_size_mismatch_caught_at_getitem(make_voc):
    root = make_voc([("a", (10, 12), [])], image_size={"a": (10, 14)})
    ds = VOCDetection(root, "train", CLASSES, verify_images=False)
    with pytest.raises(AnnotationError, match="10x14"):
        ds[0]


def test_truncated_image_found_at_construction_header(make_voc):
    root = make_voc([("a", (10, 12), [])])
    (root / "JPEGImages" / "a.jpg").write_text("not a jpeg")
    with pytest.raises(AnnotationError, match=r"a\.jpg: not an image"):
        VOCDetection(root, "train", CLASSES)


def test_split_errors(make_voc, tmp_path):
    root = make_voc([("a", (10, 10), [])], split="train")
    with pytest.raises(FileNotFoundError, match=r"available: \['train'\]"):
        VOCDetection(root, "val", CLASSES)
    (root / "ImageSets" / "Main" / "dup.txt").write_text("a\na\n")
    with pytest.raises(AnnotationError, match="duplicate image id 'a'"):
        VOCDetection(root, "dup", CLASSES)
    (root / "ImageSets" / "Main" / "evil.txt").write_text("../a\n")
    with pytest.raises(AnnotationError, match="invalid image id"):
        VOCDetection(root, "evil", CLASSES)
    with pytest.raises(FileNotFoundError, match="not a VOC root"):
        VOCDetection(tmp_path, "train", CLASSES)


def test_options_validated(make_voc):
    root = make_voc([("a", (10, 10), [])])
    with pytest.raises(ValueError, match="on_invalid"):
        VOCDetection(root, "train", CLASSES, on_invalid="ignore")
    with pytest.raises(ValueError, match="distinct"):
        VOCDetection(root, "train", ["cat", "cat"])
    with pytest.raises(ValueError, match="distinct non-empty"):
        VOCDetection(root, "train", ["cat", ""])
    with pytest.raises(TypeError, match="not the string 'cat'"):
        VOCDetection(root, "train", "cat")


def test_parse_voc_xml_direct(tmp_path):
    path = tmp_path / "z.xml"
    path.write_text(voc_xml((5, 6), [("dog", 2, 2, 6, 5)], "z.jpg"))
    filename, size, target = parse_voc_xml(path, CLASSES)
    assert filename == "z.jpg" and size == (5, 6) and target["image_id"] == "z"
    assert target["boxes"].tolist() == [[1.0, 1.0, 6.0, 5.0]] and target["labels"].tolist() == [2]


def test_exif_rotated_photo_boxes_follow_the_displayed_image(make_voc):
    from PIL import Image

    # Stored 40 wide x 20 high with orientation 6: displayed 20 wide x 40 high. The annotation
    # (made on the displayed image) has a box 15 px wide, which only fits the displayed width.
    root = make_voc([("p", (40, 20), [("cat", 1, 1, 15, 35)])])
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (40, 20), (9, 9, 9)).save(root / "JPEGImages" / "p.jpg", exif=exif.tobytes())
    ds = VOCDetection(root, "train", CLASSES)
    image, target = ds[0]
    assert image.shape == (3, 40, 20) and target["size"] == (40, 20)
    assert target["boxes"].tolist() == [[0.0, 0.0, 15.0, 35.0]]
    with pytest.raises(AnnotationError, match="pass apply_exif=True"):
        VOCDetection(root, "train", CLASSES, apply_exif=False)
