"""The texts the scenarios send (written for this benchmark): a system prompt, a
paragraph and questions about it, a conversation, short questions, prompts."""

SYSTEM_PROMPT = (
    "You are a careful assistant. Answer questions about the text the user gives you "
    "in one short sentence."
)

PARAGRAPH = (
    "The town of Linden Ford sits where two small rivers meet, and for most of its history "
    "it took its water straight from them. In 1887 a dry summer left the eastern river a "
    "chain of muddy pools, and an outbreak of fever that August convinced the town council "
    "to build a proper waterworks. The engineer they hired, Margaret Ellery, proposed a "
    "reservoir on Cobb Hill, three kilometres north of the town, fed by springs that never "
    "ran dry even in the worst droughts. Water would flow down to the town by gravity "
    "through a cast-iron main, so no pumps were needed. Construction began in the spring of "
    "1889 and took four years; the main alone used eleven hundred tonnes of iron, brought in "
    "by barge along the western river. When the reservoir was filled in 1893 it held about "
    "ninety million litres, enough for the whole town for two months. Ellery also insisted "
    "on a sand filter house at the foot of the hill, which the council thought an expensive "
    "luxury until the fever did not return. The filter house still stands today and is now "
    "a small museum, although the town has drawn most of its water from a deep well field "
    "since 1968. Every June the town holds a fair on Cobb Hill to celebrate the day the "
    "first water arrived, and children race paper boats down the old overflow channel."
)

QUESTIONS = [
    "In which year was the reservoir filled?",
    "Who was the engineer of the waterworks?",
    "How far from the town is Cobb Hill?",
    "Why were no pumps needed?",
    "How much iron did the main use?",
    "What made the council build the waterworks?",
    "What is the filter house used for today?",
    "Where has the town drawn its water since 1968?",
    "How long could the full reservoir supply the town?",
    "What happens every June on Cobb Hill?",
]

CONVERSATION = [
    "Hello! I am planning a small vegetable garden.",
    "Which vegetables are easy for a beginner?",
    "How often should I water tomatoes?",
    "And what about lettuce?",
    "Should I use compost?",
    "When should I plant carrots?",
    "How do I keep snails away?",
    "Thanks! Can you sum up your advice?",
]

SHORT_QUESTIONS = [
    "What is the capital of France?",
    "Name three primary colors.",
    "How many legs does a spider have?",
    "What is the boiling point of water?",
    "Which planet is the largest?",
]

LONG_ANSWER_PROMPT = "Write a long story about a lighthouse keeper and a storm."
RAW_PROMPT = "The history of the city of Rome begins"
VISION_PROMPTS = ["Describe this image.", "What is in the picture?"]

#: Questions about a long pasted document (made by :func:`long_document`).
DOCUMENT_QUESTIONS = [
    "In which year was the reservoir of section 3 filled?",
    "Who was the engineer in section 7?",
    "Summarise the last section in one sentence.",
    "How much iron did the main of section 2 use?",
    "What happens every June in the first section?",
    "Which section mentions the deepest well field?",
    "Why were no pumps needed in section 5?",
    "What is the filter house of section 4 used for today?",
]

_TOWNS = ["Linden Ford", "Ashby Cross", "Marrow Vale", "Tillbrook", "Eastwick", "Harlow Bridge"]
_ENGINEERS = ["Margaret Ellery", "Thomas Verne", "Ada Kowal", "Jonas Bright", "Ruth Mallory"]


def long_document(count_tokens, tokens: int) -> str:
    """A pasted document of about ``tokens`` tokens (never more), as
    ``count_tokens(text)`` counts them: numbered sections of :data:`PARAGRAPH`,
    each with its own town, engineer and years, so no two sections are the
    same text."""
    sections: list[str] = []

    def section(number: int) -> str:
        town = _TOWNS[number % len(_TOWNS)]
        engineer = _ENGINEERS[number % len(_ENGINEERS)]
        shift = number * 3
        text = PARAGRAPH.replace("Linden Ford", town).replace("Margaret Ellery", engineer)
        for year in ("1887", "1889", "1893", "1968"):
            text = text.replace(year, str(int(year) + shift))
        return f"Section {number + 1}. {text}"

    per_section = max(1, count_tokens(section(0) + "\n\n"))
    while True:
        sections.append(section(len(sections)))
        if (len(sections) + 1) * per_section > tokens:
            break
    text = "\n\n".join(sections)
    while count_tokens(text) > tokens and len(sections) > 1:
        sections.pop()
        text = "\n\n".join(sections)
    return text
