"""The generation adapter on the tiny backend: real files on disk, the real loading code, a CPU.

The tiny model is built once per test session into a shared temporary TWIN_MODELS_DIR and
loaded through the same `from_pretrained` / `load_ip_adapter` calls as real SDXL.
"""

from __future__ import annotations

import gc
import io
import json
import os
import re
import subprocess
import sys
import threading
import weakref
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from generation import model_builder, pipeline
from generation.pipeline import EmbeddingMismatch, GenerationCancelled, ImageRequest, ModelWeightsMissing
from tests.factories import unit_vector

REPO_ROOT = Path(__file__).resolve().parents[2]
DIM = 128  # the test face models' embedding size


@pytest.fixture(scope="session")
def twin_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("twin-models")


@pytest.fixture
def tiny(settings, twin_models_dir: Path) -> Path:
    settings.TWIN_BACKEND = "tiny"
    settings.TWIN_MODELS_DIR = twin_models_dir
    settings.TWIN_PERF_PRESET = "default"
    settings.TWIN_TINY_IMAGE_SIZE = 64
    settings.TWIN_DEVICE = ""
    settings.TWIN_TORCH_DTYPE = "auto"
    settings.TWIN_MAX_BATCH_IMAGES = 4
    return twin_models_dir / pipeline.TINY_FOLDER_NAME


def face_image(skin: tuple[int, int, int] = (224, 172, 140)) -> Image.Image:
    """A drawn face crop: enough structure for the CLIP path to see something."""
    image = Image.new("RGB", (112, 112), (90, 110, 140))
    draw = ImageDraw.Draw(image)
    draw.ellipse((22, 12, 90, 100), fill=skin)
    draw.ellipse((38, 42, 50, 50), fill=(40, 30, 30))
    draw.ellipse((62, 42, 74, 50), fill=(40, 30, 30))
    draw.arc((40, 62, 72, 84), 20, 160, fill=(150, 60, 60), width=3)
    return image


def make_request(**overrides) -> ImageRequest:
    fields = {
        "prompt": "a portrait photo of a person on a beach",
        "negative_prompt": "blurry",
        "seeds": [11, 12],
        "steps": 4,
        "guidance": 5.0,
        "identity_strength": 0.8,
        "id_embedding": unit_vector(DIM, seed=1),
        "reference_face": face_image(),
        "width": 64,
        "height": 64,
    }
    fields.update(overrides)
    return ImageRequest(**fields)


def pixels(images: list[Image.Image]) -> np.ndarray:
    return np.stack([np.asarray(image, dtype=np.float32) for image in images])


def test_importing_the_adapter_loads_no_ml_library():
    code = (
        "import django, sys; django.setup();"
        "import generation.pipeline, generation.model_builder;"
        "import generation.management.commands.fetch_models, generation.management.commands.build_tiny_models;"
        "heavy = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules];"
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "twinsite.settings"}
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_tiny_folder_has_the_real_weights_layout(tiny):
    pipeline.resolve_sources(backend="tiny", id_embedding_dim=DIM)  # builds it on first use
    base = tiny / "base"
    index = json.loads((base / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionXLPipeline"
    for component in ("unet", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler"):
        assert component in index
        assert (base / component).is_dir()
    assert (base / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert (base / "vae" / "diffusion_pytorch_model.safetensors").is_file()
    assert (base / "text_encoder_2" / "model.safetensors").is_file()
    for tokenizer in ("tokenizer", "tokenizer_2"):
        for name in ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"):
            assert (base / tokenizer / name).is_file()

    unet = json.loads((base / "unet" / "config.json").read_text())
    te1 = json.loads((base / "text_encoder" / "config.json").read_text())
    te2 = json.loads((base / "text_encoder_2" / "config.json").read_text())
    assert unet["down_block_types"] == ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"]
    assert unet["up_block_types"] == ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"]
    assert unet["addition_embed_type"] == "text_time"
    assert unet["transformer_layers_per_block"] == [1, 1, 2]
    assert unet["cross_attention_dim"] == te1["hidden_size"] + te2["hidden_size"]
    assert unet["projection_class_embeddings_input_dim"] == 6 * unet["addition_time_embed_dim"] + te2["projection_dim"]

    encoder = tiny / "image_encoder"
    assert json.loads((encoder / "config.json").read_text())["architectures"] == ["CLIPVisionModelWithProjection"]
    assert (encoder / "model.safetensors").is_file()
    assert (encoder / "preprocessor_config.json").is_file()

    import torch

    adapter = torch.load(tiny / "ip_adapter" / f"ip-adapter-faceid-plusv2_tiny_{DIM}.bin", weights_only=True)
    assert set(adapter) == {"image_proj", "ip_adapter"}
    image_proj = adapter["image_proj"]
    assert image_proj["proj.0.weight"].shape == (2 * DIM, DIM)
    assert image_proj["proj.2.weight"].shape == (4 * unet["cross_attention_dim"], 2 * DIM)
    assert "norm.weight" in image_proj
    for layer in range(4):
        assert image_proj[f"perceiver_resampler.layers.{layer}.0.to_q.weight"].shape[0] % 64 == 0
        assert f"perceiver_resampler.layers.{layer}.0.to_kv.weight" in image_proj
        assert f"perceiver_resampler.layers.{layer}.1.3.weight" in image_proj
    assert "perceiver_resampler.layers.4.0.to_q.weight" not in image_proj
    ip_keys = sorted(int(key.split(".")[0]) for key in adapter["ip_adapter"] if key.endswith("to_k_ip.weight"))
    assert ip_keys == list(range(1, 2 * len(ip_keys), 2))


def test_loads_through_load_ip_adapter_with_the_files_weights(tiny):
    import torch
    from diffusers import DPMSolverMultistepScheduler
    from diffusers.models.attention_processor import IPAdapterAttnProcessor2_0
    from diffusers.models.embeddings import IPAdapterFaceIDPlusImageProjection
    from transformers import CLIPVisionModelWithProjection

    loaded = pipeline._cached_pipeline(id_embedding_dim=DIM)
    pipe = loaded.pipe
    assert isinstance(pipe.scheduler, DPMSolverMultistepScheduler)
    assert isinstance(pipe.image_encoder, CLIPVisionModelWithProjection)
    projection = pipe.unet.encoder_hid_proj.image_projection_layers[0]
    assert isinstance(projection, IPAdapterFaceIDPlusImageProjection)
    assert projection.shortcut is True
    cross_attention = {n: p for n, p in pipe.unet.attn_processors.items() if n.endswith("attn2.processor")}
    assert cross_attention and all(isinstance(p, IPAdapterAttnProcessor2_0) for p in cross_attention.values())

    weights = torch.load(tiny / "ip_adapter" / f"ip-adapter-faceid-plusv2_tiny_{DIM}.bin", weights_only=True)
    first = next(iter(cross_attention.values()))
    assert torch.equal(first.to_k_ip[0].weight, weights["ip_adapter"]["1.to_k_ip.weight"])
    assert torch.equal(projection.proj.net[0].proj.weight, weights["image_proj"]["proj.0.weight"])
    assert loaded.device.type == "cpu" and loaded.dtype == torch.float32


def test_one_image_per_seed_at_the_requested_size(tiny):
    images = pipeline.generate_images(request=make_request(seeds=[1, 2, 3], width=96, height=64))
    assert len(images) == 3
    assert all(isinstance(image, Image.Image) and image.size == (96, 64) for image in images)
    assert pipeline.default_image_size() == 64


def test_same_seed_same_image_other_seed_differs(tiny):
    first = pixels(pipeline.generate_images(request=make_request(seeds=[7, 8])))
    again = pixels(pipeline.generate_images(request=make_request(seeds=[7, 8])))
    assert np.array_equal(first, again)
    assert np.abs(first[0] - first[1]).mean() > 1.0


def test_identity_inputs_change_the_output(tiny):
    base = pixels(pipeline.generate_images(request=make_request(seeds=[5], identity_strength=1.0)))
    weaker = pixels(pipeline.generate_images(request=make_request(seeds=[5], identity_strength=0.2)))
    other_twin = pixels(
        pipeline.generate_images(
            request=make_request(seeds=[5], identity_strength=1.0, id_embedding=unit_vector(DIM, seed=2))
        )
    )
    other_face = pixels(
        pipeline.generate_images(
            request=make_request(seeds=[5], identity_strength=1.0, reference_face=face_image((90, 60, 40)))
        )
    )
    assert np.abs(base - weaker).mean() > 1.0
    assert np.abs(base - other_twin).mean() > 0.5
    assert np.abs(base - other_face).mean() > 0.5


def test_identity_strength_in_the_value_weights_equals_the_adapter_scale(tiny):
    """Strength lives in the IP-Adapter value projections (so a compiled UNet never recompiles);
    the image must be the one diffusers' own adapter scale gives."""
    ours = pixels(pipeline.generate_images(request=make_request(seeds=[5], identity_strength=0.3)))
    loaded = pipeline._cached_pipeline(id_embedding_dim=DIM)
    pipeline._set_identity_strength(loaded, 1.0)
    loaded.pipe.set_ip_adapter_scale(0.3)
    try:
        theirs = pixels(pipeline.generate_images(request=make_request(seeds=[5], identity_strength=1.0)))
    finally:
        loaded.pipe.set_ip_adapter_scale(1.0)
    full = pixels(pipeline.generate_images(request=make_request(seeds=[5], identity_strength=1.0)))
    assert np.abs(ours - theirs).max() <= 1.0  # float rounding of w·s vs s·(attn w) only
    assert np.abs(ours - full).mean() > 1.0  # and the strength still matters


def test_a_compiled_unet_gets_only_its_two_warm_batch_shapes():
    seeds = list(range(7))
    assert pipeline._chunks(seeds, batch=4, compiled=True) == [[0, 1, 2, 3], [4], [5], [6]]
    assert pipeline._chunks(seeds, batch=4, compiled=False) == [[0, 1, 2, 3], [4, 5, 6]]
    assert pipeline._chunks([9], batch=4, compiled=True) == [[9]]


def test_no_reference_face_is_refused_never_replaced_by_a_grey_image(tiny):
    with pytest.raises(pipeline.MissingReferenceFace, match="Enroll the twin again"):
        pipeline.generate_images(request=make_request(seeds=[3], reference_face=None))


def test_v2_shortcut_is_on_and_its_scale_is_a_buffer_the_request_sets(tiny):
    """FaceID Plus v2 as the demo runs it (shortcut=True, s_scale=1.0 by default); the weight changes the image."""
    import torch

    loaded = pipeline._cached_pipeline(id_embedding_dim=DIM)
    projection = loaded.face_projection
    assert projection.shortcut is True
    assert "shortcut_scale" in dict(projection.named_buffers())  # data to a compiled graph, not a constant
    assert make_request().face_structure == pipeline.FACE_STRUCTURE_DEFAULT == 1.0
    full = pixels(pipeline.generate_images(request=make_request(seeds=[5], face_structure=1.0)))
    assert float(projection.shortcut_scale) == 1.0
    weak = pixels(pipeline.generate_images(request=make_request(seeds=[5], face_structure=0.2)))
    assert float(projection.shortcut_scale) == pytest.approx(0.2)
    again = pixels(pipeline.generate_images(request=make_request(seeds=[5], face_structure=1.0)))
    assert np.abs(full - weak).mean() > 0.5
    assert np.array_equal(full, again)
    assert projection.shortcut_scale.dtype == torch.float32 and projection.shortcut_scale.dim() == 0


def test_the_face_structure_buffer_matches_diffusers_float_and_does_not_recompile():
    """diffusers keeps shortcut_scale as a Python float: torch.compile guards on it (a new value
    recompiles; in a CUDA graph it is baked in). As a buffer, one compiled graph serves every value
    and gives what the float gives."""
    import torch
    from diffusers.models.embeddings import IPAdapterFaceIDPlusImageProjection
    from torch._dynamo.testing import CompileCounter

    from generation.pipeline.identity import install_face_structure_buffer

    torch.manual_seed(0)
    kwargs = dict(embed_dims=32, output_dims=32, hidden_dims=48, id_embeddings_dim=16, depth=1, dim_head=8, heads=2)
    ours, theirs = IPAdapterFaceIDPlusImageProjection(**kwargs).eval(), IPAdapterFaceIDPlusImageProjection(**kwargs)
    theirs.load_state_dict(ours.state_dict())
    theirs.eval().shortcut = True
    install_face_structure_buffer(ours)
    clip = torch.randn(1, 1, 5, 48)
    ours.clip_embeds = theirs.clip_embeds = clip
    ids = torch.randn(1, 1, 16)

    counter = CompileCounter()
    compiled = torch.compile(ours, backend=counter, fullgraph=True)
    float_counter = CompileCounter()
    compiled_float = torch.compile(theirs, backend=float_counter, fullgraph=True)
    torch._dynamo.reset()
    with torch.no_grad():
        for value in (1.0, 0.5, 1.7):
            ours.shortcut_scale.fill_(value)
            theirs.shortcut_scale = value
            assert torch.allclose(compiled(ids), theirs(ids), atol=1e-6)
            compiled_float(ids)
    assert counter.frame_count == 1  # one graph for every face-structure weight
    assert float_counter.frame_count > 1  # the float diffusers ships would recompile per value


def test_guidance_one_runs_without_the_negative_half(tiny):
    images = pipeline.generate_images(request=make_request(seeds=[3, 4], guidance=1.0, width=96, height=64))
    assert len(images) == 2
    assert all(image.size == (96, 64) and image.mode == "RGB" for image in images)
    first = pixels(images)
    again = pixels(pipeline.generate_images(request=make_request(seeds=[3, 4], guidance=1.0, width=96, height=64)))
    assert np.array_equal(first, again)  # the same seed gives the same image
    assert np.abs(first[0] - first[1]).mean() > 1.0  # another seed another one


def test_on_step_reports_every_step(tiny):
    calls: list[tuple[int, int]] = []
    pipeline.generate_images(request=make_request(steps=5), on_step=lambda done, total: calls.append((done, total)))
    assert calls == [(step, 5) for step in range(1, 6)]


def test_seeds_beyond_one_batch_run_in_several_calls(tiny, settings):
    settings.TWIN_MAX_BATCH_IMAGES = 2
    loaded = pipeline._cached_pipeline(id_embedding_dim=DIM)
    calls: list[tuple[int, int]] = []
    images = pipeline.run_pipeline(loaded, make_request(seeds=[1, 2, 3], steps=2), lambda d, t: calls.append((d, t)))
    assert len(images) == 3
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_cancelling_in_on_step_stops_after_that_step(tiny):
    calls: list[int] = []

    def on_step(done: int, total: int) -> None:
        calls.append(done)
        if done == 2:
            raise GenerationCancelled

    with pytest.raises(GenerationCancelled):
        pipeline.generate_images(request=make_request(steps=10), on_step=on_step)
    assert calls == [1, 2]
    # The warm pipeline is still usable afterwards.
    assert len(pipeline.generate_images(request=make_request(seeds=[1], steps=1))) == 1


def test_a_twin_with_another_embedding_size_gets_its_own_adapter(tiny):
    images = pipeline.generate_images(request=make_request(seeds=[1], steps=2, id_embedding=unit_vector(64)))
    assert len(images) == 1
    assert (tiny / "ip_adapter" / "ip-adapter-faceid-plusv2_tiny_64.bin").is_file()
    assert pipeline._cached_pipeline(id_embedding_dim=64).id_embedding_dim == 64


def test_wrong_size_embedding_for_a_loaded_pipeline_is_refused(tiny):
    loaded = pipeline._cached_pipeline(id_embedding_dim=DIM)
    with pytest.raises(EmbeddingMismatch, match="takes 128-d face embeddings; this twin has 512-d"):
        pipeline.run_pipeline(loaded, make_request(id_embedding=unit_vector(512)))


def test_bad_request_values_are_refused_with_a_message(tiny):
    loaded = pipeline._cached_pipeline(id_embedding_dim=DIM)
    with pytest.raises(ValueError, match="width must be a positive multiple of 8"):
        pipeline.run_pipeline(loaded, make_request(width=100))
    with pytest.raises(ValueError, match="at least one seed"):
        pipeline.run_pipeline(loaded, make_request(seeds=[]))


def test_sdxl_refuses_a_128d_twin_with_a_clear_message(tiny, settings):
    settings.TWIN_BACKEND = "sdxl"
    request = make_request(embedding_model="scrfd500m_mbf")
    with pytest.raises(EmbeddingMismatch) as caught:
        pipeline.generate_images(request=request)
    assert str(caught.value).startswith(
        "FaceID Plus v2 needs 512-d buffalo_l embeddings; this twin has 128-d from scrfd500m_mbf"
    )


def test_sdxl_without_weights_says_to_run_fetch_models(settings, tmp_path):
    settings.TWIN_BACKEND = "sdxl"
    settings.TWIN_MODELS_DIR = tmp_path
    settings.TWIN_BASE_MODEL = "twinsite-test/no-such-sdxl"
    with pytest.raises(ModelWeightsMissing) as caught:
        pipeline.generate_images(request=make_request(id_embedding=unit_vector(512)))
    message = str(caught.value)
    assert message.startswith(f"Model weights not found at {tmp_path / 'twinsite-test/no-such-sdxl'}")
    assert "TWIN_BASE_MODEL" in message
    assert "run `manage.py fetch_models`" in message


def test_sdxl_with_incomplete_files_says_to_run_fetch_models(settings, tmp_path):
    base = tmp_path / "acme" / "broken-sdxl"
    base.mkdir(parents=True)
    (base / "model_index.json").write_text('{"_class_name": "StableDiffusionXLPipeline"}')
    settings.TWIN_MODELS_DIR = tmp_path
    settings.TWIN_BASE_MODEL = "acme/broken-sdxl"
    settings.TWIN_IP_ADAPTER = str(tmp_path / "adapter")
    settings.TWIN_IMAGE_ENCODER = str(tmp_path / "encoder")
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / settings.TWIN_IP_ADAPTER_WEIGHT).write_bytes(b"not a checkpoint")
    (tmp_path / "encoder").mkdir()
    (tmp_path / "encoder" / "config.json").write_text("{}")
    with pytest.raises(ModelWeightsMissing, match=re.escape("run `manage.py fetch_models`")):
        pipeline.load_pipeline(backend="sdxl", id_embedding_dim=512, preset="eager")


def test_sdxl_backend_loads_weights_found_under_models_dir_by_id(tiny, settings, tmp_path):
    """The sdxl path end to end, with the tiny files laid out where fetch_models puts real ones."""
    folder = model_builder.ensure_random_pipeline_folder(tiny, id_embedding_dim=512)
    (tmp_path / "acme").mkdir()
    (tmp_path / "acme" / "sdxl").symlink_to(folder.base_dir)
    (tmp_path / "acme" / "faceid").symlink_to(folder.adapter_dir)
    (tmp_path / "acme" / "clip").symlink_to(folder.image_encoder_dir)
    settings.TWIN_BACKEND = "sdxl"
    settings.TWIN_MODELS_DIR = tmp_path
    settings.TWIN_BASE_MODEL = "acme/sdxl"
    settings.TWIN_IP_ADAPTER = "acme/faceid"
    settings.TWIN_IP_ADAPTER_WEIGHT = folder.adapter_weight_name
    settings.TWIN_IMAGE_ENCODER = "acme/clip"

    loaded = pipeline.load_pipeline(backend="sdxl", id_embedding_dim=512, preset="default")
    assert loaded.sources.base_dir == tmp_path / "acme" / "sdxl"
    images = pipeline.run_pipeline(loaded, make_request(seeds=[1], steps=2, id_embedding=unit_vector(512)))
    assert len(images) == 1 and images[0].size == (64, 64)


def test_sdxl_ids_resolve_from_the_hugging_face_cache(tmp_path):
    """Ids not under TWIN_MODELS_DIR are found in the local HF cache (never downloaded)."""
    hub = tmp_path / "hub"
    for repo, marker in (("acme/sdxl", "model_index.json"), ("acme/faceid", "ip.bin"), ("acme/clip", "config.json")):
        repo_dir = hub / f"models--{repo.replace('/', '--')}"
        (repo_dir / "refs").mkdir(parents=True)
        (repo_dir / "refs" / "main").write_text("0123abcd")
        snapshot = repo_dir / "snapshots" / "0123abcd"
        snapshot.mkdir(parents=True)
        (snapshot / marker).write_text("{}")
    code = (
        "import django; django.setup();"
        "from generation import pipeline;"
        "s = pipeline.resolve_sources(backend='sdxl', id_embedding_dim=512);"
        "print(s.base_dir); print(s.adapter_dir); print(s.image_encoder_dir)"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "twinsite.settings",
        "HF_HUB_CACHE": str(hub),
        "HF_HUB_OFFLINE": "1",
        "TWIN_MODELS_DIR": str(tmp_path / "empty"),
        "TWIN_BASE_MODEL": "acme/sdxl",
        "TWIN_IP_ADAPTER": "acme/faceid",
        "TWIN_IP_ADAPTER_WEIGHT": "ip.bin",
        "TWIN_IMAGE_ENCODER": "acme/clip",
    }
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()[-3:]
    assert lines == [
        str(hub / f"models--acme--{name}" / "snapshots" / "0123abcd") for name in ("sdxl", "faceid", "clip")
    ]


def test_random_backend_needs_a_built_folder(tmp_path):
    with pytest.raises(ModelWeightsMissing, match="Random-weight model folder not found"):
        pipeline.load_pipeline(backend="random", id_embedding_dim=DIM, preset="eager", model_dir=tmp_path / "none")


def test_concurrent_first_use_builds_one_complete_folder(tmp_path):
    target = tmp_path / "tiny"
    errors: list[BaseException] = []

    def build() -> None:
        try:
            model_builder.ensure_random_pipeline_folder(target, id_embedding_dim=32)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert model_builder.is_complete(target)
    assert (target / "ip_adapter" / "ip-adapter-faceid-plusv2_tiny_32.bin").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tiny.tmp")] == []


def test_full_size_architecture_matches_published_sdxl():
    """Checked on the meta device: the full build is 9.3 GB and meant for GPU hosts."""
    from accelerate import init_empty_weights
    from diffusers import UNet2DConditionModel

    full = model_builder.FULL
    assert full.unet["cross_attention_dim"] == full.text_encoder["hidden_size"] + full.text_encoder_2["hidden_size"]
    assert full.unet["projection_class_embeddings_input_dim"] == (
        6 * full.unet["addition_time_embed_dim"] + full.text_encoder_2["projection_dim"]
    )
    with init_empty_weights():
        unet = UNet2DConditionModel(**full.unet)
    assert 2.5e9 < sum(p.numel() for p in unet.parameters()) < 2.6e9
    assert sum(name.endswith("attn2.processor") for name in unet.attn_processors) == 70


def test_run_record_reads_what_was_loaded(tiny):
    import json

    loaded = pipeline._cached_pipeline(id_embedding_dim=DIM)
    record = pipeline.run_record()
    # Strict JSON (no NaN/Infinity: SQLite's and Postgres' JSON columns refuse them): the job row, a file's metadata.
    assert json.loads(json.dumps(record, allow_nan=False)) == record
    assert record["scheduler"] == type(loaded.pipe.scheduler).__name__ == "DPMSolverMultistepScheduler"
    assert record["scheduler_config"]["algorithm_type"] == loaded.pipe.scheduler.config.algorithm_type
    assert record["scheduler_config"]["use_karras_sigmas"] is True
    assert (record["backend"], record["preset"], record["compiled"]) == ("tiny", "default", False)
    assert (record["device"], record["dtype"]) == ("cpu", "float32")
    base = record["models"]["base_model"]
    index = json.loads((loaded.sources.base_dir / "model_index.json").read_text())
    assert base["path"] == str(loaded.sources.base_dir)
    assert base["class_name"] == index["_class_name"] and base["diffusers_version"] == index["_diffusers_version"]
    assert record["models"]["ip_adapter"]["weight_name"] == loaded.sources.adapter_weight_name
    assert record["random_weights"]["size"] == "tiny"
    assert record["face_structure_shortcut"] is True
    for package in ("torch", "diffusers", "onnxruntime"):
        assert record[package] and record[package] != "not installed"


def test_model_revisions_come_from_the_folder_they_were_loaded_from(tmp_path):
    from generation.pipeline.provenance import folder_record

    commit = "0123456789abcdef0123456789abcdef01234567"
    cached = tmp_path / "hub" / "models--h94--IP-Adapter-FaceID" / "snapshots" / commit
    cached.mkdir(parents=True)
    (cached / "ip-adapter-faceid-plusv2_sdxl.bin").write_bytes(b"x")
    assert folder_record(cached, "ip-adapter-faceid-plusv2_sdxl.bin") | {"path": ""} == {
        "path": "",
        "repo_id": "h94/IP-Adapter-FaceID",
        "revision": commit,
    }
    fetched = tmp_path / "models" / "stabilityai" / "stable-diffusion-xl-base-1.0"
    (fetched / ".cache" / "huggingface" / "download").mkdir(parents=True)
    (fetched / "model_index.json").write_text(
        '{"_class_name": "StableDiffusionXLPipeline", "_diffusers_version": "0.19.0.dev0",'
        ' "_name_or_path": "stabilityai/stable-diffusion-xl-base-1.0"}'
    )
    (fetched / ".cache" / "huggingface" / "download" / "model_index.json.metadata").write_text(f"{commit}\netag\n1.0\n")
    record = folder_record(fetched, "model_index.json")
    assert record["revision"] == commit and record["name_or_path"] == "stabilityai/stable-diffusion-xl-base-1.0"
    assert record["diffusers_version"] == "0.19.0.dev0"


def test_release_memory_frees_what_a_failed_run_left_and_keeps_the_pipeline_warm(tiny):
    import torch

    loaded = pipeline._cached_pipeline(id_embedding_dim=DIM)
    # What a run that died mid-step can leave: the face's CLIP embeds still on the adapter, and
    # tensors held only by reference cycles (a traceback's frames), which only the collector frees.
    leftover = torch.zeros(2, 1, 4, 16)
    loaded.face_projection.clip_embeds = leftover
    cycle: list = [torch.zeros(1 << 20, device=loaded.device)]
    cycle.append(cycle)
    leftover_ref, cycle_ref = weakref.ref(leftover), weakref.ref(cycle[0])
    del leftover, cycle
    on_gpu = loaded.device.type == "cuda"
    gc.disable()  # so only release_memory can collect the cycle here
    try:
        assert leftover_ref() is not None and cycle_ref() is not None
        allocated = torch.cuda.memory_allocated() if on_gpu else 0
        pipeline.release_memory()
        if on_gpu:
            assert allocated - torch.cuda.memory_allocated() >= 4 << 20  # the cycle's 4 MiB went back
        assert loaded.face_projection.clip_embeds is None
        assert leftover_ref() is None, "the adapter still holds the failed run's CLIP embeds"
        assert cycle_ref() is None, "garbage from the failed run was not collected"
    finally:
        gc.enable()
    assert pipeline._cached_pipeline(id_embedding_dim=DIM) is loaded
    assert len(pipeline.generate_images(request=make_request(seeds=[1], steps=1))) == 1  # still warm and usable


def test_warm_up_loads_the_pipeline_jobs_use(tiny):
    pipeline.warm_up(id_embedding_dim=DIM)
    warm = pipeline._cached_pipeline(id_embedding_dim=DIM)
    pipeline.generate_images(request=make_request(seeds=[1], steps=1))
    assert pipeline._cached_pipeline(id_embedding_dim=DIM) is warm


def test_build_tiny_models_command_builds_adapters_per_dim(tmp_path):
    from django.core.management import call_command

    out = io.StringIO()
    call_command("build_tiny_models", "--dim", "16", "--dim", "24", "--path", str(tmp_path / "tiny"), stdout=out)
    assert model_builder.is_complete(tmp_path / "tiny")
    adapters = sorted(p.name for p in (tmp_path / "tiny" / "ip_adapter").iterdir())
    assert adapters == ["ip-adapter-faceid-plusv2_tiny_16.bin", "ip-adapter-faceid-plusv2_tiny_24.bin"]
    assert "tiny random-weight models in" in out.getvalue()
