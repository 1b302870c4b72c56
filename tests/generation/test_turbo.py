"""The `turbo` preset: a distilled few-step LoRA in the real files' key layout, fused through diffusers,
swapped in place per job on one loaded pipeline; chosen per job in the form and the API, and recorded."""

from __future__ import annotations

import numpy as np
import pytest
from django.urls import reverse
from safetensors.torch import load_file

from generation import pipeline
from generation.management.commands.fetch_models import model_sets
from generation.models import GenerationJob
from generation.pipeline.presets import RECIPES
from generation.services import submit_generation
from tests.factories import TwinFactory
from tests.generation.test_pipeline import DIM, make_request, pixels
from tests.generation.test_pipeline import tiny as tiny
from tests.generation.test_pipeline import twin_models_dir as twin_models_dir
from tests.generation.test_services import bush_photos as bush_photos
from tests.generation.test_services import bush_twin as bush_twin
from tests.generation.test_services import gpu as gpu
from twinsite.errors import ValidationFailed


@pytest.fixture
def loaded(tiny):
    return pipeline.load_pipeline(backend="tiny", id_embedding_dim=DIM, preset="default")


def test_the_tiny_turbo_lora_has_the_kohya_layout_of_the_published_files(loaded, tiny):
    from generation.model_builder import TURBO_LORA_NAME, TURBO_LORA_SUBDIR

    state = load_file(str(tiny / TURBO_LORA_SUBDIR / TURBO_LORA_NAME))
    assert state and all(key.startswith("lora_unet_") for key in state)
    suffixes = {key.split(".", 1)[1] for key in state}
    assert suffixes == {"lora_down.weight", "lora_up.weight", "alpha"}
    assert "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight" in state


def test_the_lora_is_fused_into_plain_weights_before_anything_runs(loaded):
    unet = loaded.pipe.unet
    assert loaded.recipe_weights is not None and len(loaded.recipe_weights.params) > 50
    # unload_lora_weights ran: no LoRA layer is left in the UNet to slow each step or to compile.
    assert not any("lora" in name for name, _ in unet.named_modules())
    assert not getattr(unet, "peft_config", None)


def test_a_turbo_job_changes_the_picture_and_default_comes_back_exactly(loaded):
    import torch

    weights = loaded.recipe_weights
    name, live = next(iter(weights.params.items()))
    assert not torch.equal(weights.values["default"][name], weights.values["turbo"][name])
    default = pixels(pipeline.run_pipeline(loaded, make_request()))
    turbo = pixels(pipeline.run_pipeline(loaded, make_request(preset="turbo", steps=8)))
    assert torch.equal(live.detach(), weights.values["turbo"][name])  # the job ran on the fused weights
    assert type(loaded.pipe.scheduler).__name__ == "DDIMScheduler"
    assert loaded.pipe.scheduler.config.timestep_spacing == "trailing"
    again = pixels(pipeline.run_pipeline(loaded, make_request()))
    assert np.abs(default - turbo).mean() > 1.0  # the LoRA's weights and the DDIM scheduler took part
    np.testing.assert_array_equal(default, again)  # swapped back exactly, no unfuse drift
    assert type(loaded.pipe.scheduler).__name__ == "DPMSolverMultistepScheduler"


def test_a_turbo_worker_rests_in_the_turbo_weights_and_gives_the_same_pictures(loaded, tiny):
    on_default_worker = pixels(pipeline.run_pipeline(loaded, make_request(preset="turbo", steps=8)))
    turbo_worker = pipeline.load_pipeline(backend="tiny", id_embedding_dim=DIM, preset="turbo")
    assert turbo_worker.recipe_weights.active == "turbo"
    on_turbo_worker = pixels(pipeline.run_pipeline(turbo_worker, make_request(preset="turbo", steps=8)))
    assert turbo_worker.recipe_weights.switches == 0  # its resting weights served the job: no copy
    np.testing.assert_array_equal(on_default_worker, on_turbo_worker)


def test_a_worker_without_the_lora_serves_default_and_refuses_turbo_plainly(loaded):
    loaded.recipe_weights, loaded.turbo_problem = None, "no LoRA here"
    pipeline.run_pipeline(loaded, make_request(seeds=[1]))
    with pytest.raises(pipeline.ModelWeightsMissing, match="turbo preset: no LoRA here"):
        pipeline.run_pipeline(loaded, make_request(seeds=[1], preset="turbo"))


def test_fetch_models_fetches_the_hyper_sd_lora():
    (item,) = [item for item in model_sets() if item.key == "turbo-lora"]
    assert (item.repo_id, item.filename) == ("ByteDance/Hyper-SD", "Hyper-SDXL-8steps-CFG-lora.safetensors")


# --- the job's choice ------------------------------------------------------------------------------


@pytest.fixture
def twin(alice):
    return TwinFactory(owner=alice, ready=True)


def test_a_turbo_job_records_its_preset_and_the_steps_and_guidance_that_run(alice, twin):
    job = submit_generation(owner=alice, twin=twin, prompt="x", steps=30, preset="turbo")
    job.refresh_from_db()
    assert (job.preset, job.steps, job.guidance) == ("turbo", RECIPES["turbo"].steps, RECIPES["turbo"].guidance)
    assert job.progress_total == RECIPES["turbo"].steps
    default = submit_generation(owner=alice, twin=twin, prompt="x", steps=25)
    assert (default.preset, default.steps) == ("default", 25)


def test_an_unknown_preset_is_refused(alice, twin):
    with pytest.raises(ValidationFailed) as error:
        submit_generation(owner=alice, twin=twin, prompt="x", preset="ludicrous")
    assert "preset" in error.value.fields


def test_the_api_takes_and_answers_the_preset(api_alice, twin):
    response = api_alice.post(
        "/api/generations/", {"twin": twin.pk, "prompt": "studio portrait", "preset": "turbo"}, format="json"
    )
    assert response.status_code == 202, response.json()
    assert (response.json()["preset"], response.json()["steps"]) == ("turbo", 8)
    bad = api_alice.post("/api/generations/", {"twin": twin.pk, "prompt": "x", "preset": "warp"}, format="json")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid"


def test_the_form_offers_the_quality_choice_and_submits_it(client, alice, twin):
    client.force_login(alice)
    page = client.get(reverse("generation-new", args=[twin.pk]))
    assert b'name="preset"' in page.content and b"Fast (8 steps)" in page.content
    fields = {"prompt": "a portrait", "num_images": 1, "preset": "turbo", "steps": 30, "guidance": 5.0}
    fields.update(identity_strength=0.8, best_of=1)
    response = client.post(reverse("generation-submit", args=[twin.pk]), fields)
    assert response.status_code == 302, response.content[:500]
    assert GenerationJob.objects.get().preset == "turbo"


def test_the_worker_runs_the_jobs_preset_and_records_it(bush_twin, gpu, media_root, monkeypatch):
    from generation.services import run_generation
    from tests.factories import GenerationJobFactory

    job = GenerationJobFactory(twin=bush_twin, num_images=1, steps=8, preset="turbo")
    fake = gpu(job)
    seen: list[str] = []

    def spy(*, request, on_step=None):
        seen.append(request.preset)
        return fake(request=request, on_step=on_step)

    monkeypatch.setattr(pipeline, "generate_images", spy)
    run_generation(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == GenerationJob.Status.SUCCEEDED, job.error
    assert seen == ["turbo"]
    assert job.model_versions["recipe"] == "turbo"  # the scheduler class itself comes from the loaded pipeline
