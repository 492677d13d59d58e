"""Recall questions ("what's my dog's name?") answered from the notes about the fan (nodes/recall.py),
through the whole persona_chat graph with scripted models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.store.memory import InMemoryStore

from personagraph.accounts.identity import Caller
from personagraph.nodes.recall import RecalledFact, fact_of, recalled_reply, template_sentence, vocatives
from personagraph.personas.model import load_persona
from personagraph.services.chat import ChatService, validate_request
from personagraph.serving.models import use_models
from tests.fakes import scripted

FAN = Caller("fan1")


@pytest.fixture
def service(data_dir: Path) -> ChatService:
    return ChatService(checkpointer=InMemorySaver(), store=InMemoryStore())


def request(message: str, thread_id: str = "t1"):
    return validate_request(message=message, thread_id=thread_id, persona_id="tiny")


def router_answering(recalled: dict[str, Any] | str) -> Any:
    """The router role: the profile extraction, the recall question, else small talk."""
    recall_calls: list[str] = []

    def answer(messages: list[Any]) -> str:
        system = str(messages[0].content)
        if "Extract facts" in system:
            return '{"name": "Minji", "facts": ["my dog is called Bori"]}'
        if "The fan is asking" in system:
            recall_calls.append(str(messages[1].content))
            return recalled if isinstance(recalled, str) else __import__("json").dumps(recalled)
        return '{"intent": "smalltalk", "search_query": ""}'

    model = scripted(answer)
    model.__dict__["recall_calls"] = recall_calls
    return model


def test_a_recall_question_is_answered_from_the_notes_without_a_draft(service: ChatService) -> None:
    router = router_answering({"found": True, "answer": "Bori", "sentence": "Your dog's name is Bori."})
    chat = scripted("Nice to meet you, Minji! 🌱", AssertionError("the recall turn needs no draft"))
    with use_models({"router": router, "chat": chat}):
        service.send(FAN, request("I'm Minji and my dog is called Bori."))
        result = service.send(FAN, request("What's my dog's name?", thread_id="t-new"))
    assert result.error is None
    assert result.reply == "Of course I remember! Your dog's name is Bori."
    assert result.intent == "personal"
    assert len(chat.calls) == 1
    # The notes were data: the fan's stored words inside a fence, then the question.
    (notes,) = router.recall_calls
    assert "my dog is called Bori" in notes and "<data" in notes and notes.endswith("What's my dog's name?")
    assert "the fan's name" not in notes  # the model-extracted profile is not evidence
    assert service.history(FAN, "t-new")[-1].content == result.reply


def test_an_answer_that_is_not_in_the_notes_goes_to_the_draft(service: ChatService) -> None:
    router = router_answering({"found": True, "answer": "Coco", "sentence": "Your dog's name is Coco."})
    chat = scripted("Nice to meet you, Minji! 🌱", "Hmm, tell me about your dog again, Pebbler?")
    with use_models({"router": router, "chat": chat}):
        service.send(FAN, request("I'm Minji and my dog is called Bori."))
        result = service.send(FAN, request("What's my dog's name?"))
    assert result.reply == "Hmm, tell me about your dog again, Pebbler?"
    assert "Bori" in chat.calls[1]["messages"][-1].content or any(
        "Bori" in str(m.content) for m in chat.calls[1]["messages"]
    )


@pytest.mark.parametrize(
    "recalled",
    [
        {"found": False, "answer": "", "sentence": ""},
        "this is not JSON at all",  # every structured attempt fails: the draft answers
    ],
)
def test_nothing_found_or_garbage_goes_to_the_draft(service: ChatService, recalled: Any) -> None:
    router = router_answering(recalled)
    chat = scripted("Nice to meet you, Minji! 🌱", "Your dog? Tell me again, Pebbler!")
    with use_models({"router": router, "chat": chat}):
        service.send(FAN, request("I'm Minji and my dog is called Bori."))
        result = service.send(FAN, request("What's my dog's name?"))
    assert result.error is None
    assert result.reply == "Your dog? Tell me again, Pebbler!"


def test_a_fan_with_no_notes_costs_no_recall_call(service: ChatService) -> None:
    router = router_answering({"found": True, "answer": "Bori", "sentence": "Your dog's name is Bori."})
    with use_models({"router": router, "chat": scripted("I don't think you told me yet, Pebbler!")}):
        result = service.send(FAN, request("What's my dog's name?"))
    assert router.recall_calls == []
    assert result.reply == "I don't think you told me yet, Pebbler!"


def test_a_sentence_that_takes_the_fact_as_the_personas_is_replaced(data_dir: Path) -> None:
    persona = load_persona("tiny")
    notes = ["my dog is called Bori"]
    claimed = RecalledFact(found=True, answer="Bori", sentence="My dog's name is Bori.")
    assert (
        recalled_reply(claimed, notes, persona, "en", ["Minji"]) == "Of course I remember! You told me: Bori."
    )
    wrong_language = RecalledFact(found=True, answer="Bori", sentence="네 강아지 이름은 Bori야.")
    assert (
        recalled_reply(wrong_language, notes, persona, "en", []) == "Of course I remember! You told me: Bori."
    )
    echoed = RecalledFact(found=True, answer="Arin", sentence="Captain, do you remember Arin?")
    assert recalled_reply(echoed, ["Captain, call me Arin."], persona, "en", []) == (
        "Of course I remember! You told me: Arin."
    )
    whole = RecalledFact(found=True, answer="제 고향은 부산이에요", sentence="제 고향은 부산이에요")
    assert recalled_reply(whole, ["함장님, 제 고향은 부산이에요."], persona, "ko", []) == (
        "그럼, 당연히 기억하지! 부산이라고 했잖아."
    )
    sentence = RecalledFact(found=True, answer="I work as a nurse", sentence="You work as a nurse.")
    assert recalled_reply(sentence, ["I work as a nurse at a hospital."], persona, "en", []) is None
    verb = RecalledFact(found=True, answer="배우고 있어", sentence="네 배우고 있어!")  # memory eval, mem-13
    assert recalled_reply(verb, ["나 요즘 우쿨렐레 배우고 있어!"], persona, "ko", []) is None
    name = RecalledFact(found=True, answer="하은", sentence="하은이야")  # Kiwi reads the name alone as a verb
    assert recalled_reply(name, ["나는 스텔라에서 하은이를 제일 좋아해!"], persona, "ko", []) is not None
    own_habit = RecalledFact(
        found=True,
        answer="Lighthouse",
        sentence="Your favourite song is Lighthouse, I play it every morning.",
    )
    assert recalled_reply(
        own_habit, ["My favourite is Lighthouse, I play it every morning."], persona, "en", []
    ) == ("Of course I remember! You told me: Lighthouse.")
    named = RecalledFact(found=True, answer="Bori", sentence="Your dog's name is Bori, Tiny.")
    assert recalled_reply(named, ["my dog is called Bori"], persona, "en", []) == (
        "Of course I remember! You told me: Bori."
    )
    titled = RecalledFact(found=True, answer="Bori", sentence="Your dog's name is Bori, Captain.")
    question = "What's my dog's name, Captain?"
    assert recalled_reply(titled, ["my dog is called Bori"], persona, "en", [], question) == (
        "Of course I remember! You told me: Bori."
    )
    ordinal = RecalledFact(found=True, answer="May 3rd", sentence="Your birthday is May 3rd.")
    assert recalled_reply(ordinal, ["my birthday is on May 3!"], persona, "en", []) == (
        "Of course I remember! Your birthday is May 3rd."
    )
    told = RecalledFact(found=True, answer="bori", sentence="Your dog is Bori, Minji!")
    assert (
        recalled_reply(told, notes, persona, "en", ["Minji"])
        == "Of course I remember! Your dog is Bori, Minji!"
    )


def test_korean_replies_take_the_template(data_dir: Path) -> None:
    persona = load_persona("tiny")
    broken = RecalledFact(found=True, answer="콩이", sentence="네 콩이야는 이름")
    assert recalled_reply(broken, ["우리 고양이 이름은 콩이야."], persona, "ko", []) == (
        "그럼, 당연히 기억하지! 콩이라고 했잖아."
    )


@pytest.mark.parametrize(
    ("answer", "fact"),
    [
        ("내 생일은 10월 9일이야", "10월 9일"),  # memory eval, mem-16
        ("모찌예요", "모찌"),  # mem-19 had "모찌예요라고 했잖아."
        ("My birthday is November 14", "November 14"),
        ("콩이야", "콩"),  # the template still reads "콩이라고 했잖아."
        ("떡볶이", "떡볶이"),
        ("Bori", "Bori"),
        ("I work as a nurse", "I work as a nurse"),  # no fact to cut out: rejected as first person
    ],
)
def test_the_fact_inside_a_copied_sentence(answer: str, fact: str) -> None:
    assert fact_of(answer) == fact


def test_what_the_fan_calls_the_persona() -> None:
    assert vocatives("What's my dog's name, Captain?") == ["Captain"]
    assert vocatives("함장님, 제 이름 기억하세요?") == ["함장님"]
    assert vocatives("유나야, 내 이름 기억나?") == ["유나야"]
    assert vocatives("Do you remember my name?") == []


def test_the_korean_template_takes_the_right_particle() -> None:
    assert template_sentence("콩이", "ko") == "콩이라고 했잖아."
    assert template_sentence("서진", "ko") == "서진이라고 했잖아."
    assert template_sentence("3월 14일", "ko") == "3월 14일이라고 했잖아."
    assert template_sentence("Bori", "ko") == "Bori라고 했잖아."
