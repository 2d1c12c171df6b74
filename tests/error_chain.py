"""What a failed run says: the text of an error and of every error it was raised from."""


def error_text(error: BaseException) -> str:
    texts, seen = [], set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        texts.append(str(error))
        error = error.__cause__ or error.__context__
    return " | ".join(texts)
