// Umbrella header of the DFMA C++ runtime.
#pragma once

#include "dfma/errors.hpp"
#include "dfma/extractor.hpp"
#include "dfma/host.hpp"
#include "dfma/image.hpp"
#include "dfma/text.hpp"
#include "dfma/verify.hpp"
