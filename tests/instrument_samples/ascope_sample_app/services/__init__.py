def package_level() -> str:
    return "services"
