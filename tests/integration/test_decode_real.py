"""The decoding engine against the real local vLLM teacher (three temperatures, one endpoint)."""

from __future__ import annotations

from cord_proxy import DecodeJob, DecodeOptions, decode
from cord_proxy.config import TeacherConfig
from cord_proxy.teachers.openai_compat import OpenAICompatTeacher


async def test_three_homogeneous_teachers_beam_two(local_teacher: str) -> None:
    teachers = [
        OpenAICompatTeacher(
            TeacherConfig(
                name=f"t{temperature}",
                base_url=local_teacher,
                model="gemma3-270m",
                temperature=temperature,
                timeout=300,
            )
        )
        for temperature in (0.5, 0.6, 0.7)
    ]
    options = DecodeOptions(
        beam_width=2,
        max_steps=3,
        max_step_tokens=24,
        answer_budget=16,
        thinking_budget=512,
        include_candidates=True,
        seed=1,
    )
    try:
        result = await decode(
            DecodeJob.create("What is 12 + 30?", teachers, options, reference_answer="42")
        )
    finally:
        for teacher in teachers:
            await teacher.aclose()

    assert result.traces and result.reference_used
    names = {t.name for t in teachers}
    for trace in result.traces:
        for step in trace.steps:
            assert step.proposers and set(step.proposers) <= names
            assert 0.0 < step.score <= 1.0
            # One model at three temperatures is one scorer model, named after its first.
            assert [p.scorer for p in step.scorers] == ["t0.5"]
    best = result.best
    for step in best.steps:
        candidates = step.candidates or []
        scored = sorted((c.log_score for c in candidates), reverse=True)
        selected = sorted((c.log_score for c in candidates if c.selected), reverse=True)
        assert selected == scored[: len(selected)]
        assert step.log_score in selected
    critical = sum(r.critical_s for r in result.rounds) + result.answer_wait_s
    print(
        f"\ndecode wall {result.wall_s:.2f} s; sum of per-step slowest propose+score "
        f"plus answer {critical:.2f} s; rounds {[round(r.wall_s, 2) for r in result.rounds]}"
    )
    assert critical <= result.wall_s + 1e-6
