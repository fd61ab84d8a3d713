VALUE = "from the package's own helper"
