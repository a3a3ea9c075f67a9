from cnnlab.paths import DATA_DIR_ENV, data_dir


def test_data_dir_follows_the_setting(tmp_path, monkeypatch):
    (tmp_path / "mnist").mkdir()
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    assert data_dir("mnist") == tmp_path / "mnist"
    assert data_dir("coco") is None  # absent sub-folder
    monkeypatch.delenv(DATA_DIR_ENV)
    assert data_dir("mnist") is None
