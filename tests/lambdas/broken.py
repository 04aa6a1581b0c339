import not_a_module_anywhere  # noqa: F401  (Runtime.ImportModuleError on purpose)


def handler(event, context):
    return event
