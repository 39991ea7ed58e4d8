# node-gyp build of native/ (what `npm install` runs through scripts/build-native.cjs).
# One static library per instruction set, each with its own flags (as Node's deps/base64 does);
# the addon target itself keeps the baseline flags. Source lists: native/sources.json (also read
# by CMakeLists.txt).
{
  "target_defaults": {
    "cflags_cc": ["-std=c++17", "-fPIC", "-O3", "-fno-math-errno"],
    "cflags_cc!": ["-fno-exceptions", "-std=gnu++17", "-std=gnu++20", "-std=c++20"],
    "cflags!": ["-fno-exceptions"],
    "include_dirs": ["native"],
    "xcode_settings": {
      "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
      "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
      "OTHER_CPLUSPLUSFLAGS": ["-O3"]
    },
    "msvs_settings": {"VCCLCompilerTool": {"ExceptionHandling": 1}}
  },
  "targets": [
    {
      "target_name": "sa_generic",
      "type": "static_library",
      "sources": ["<!@(node -p \"require('./native/sources.json').generic.join(' ')\")"]
    },
    {
      "target_name": "simd_attention",
      "dependencies": ["sa_generic"],
      "sources": ["<!@(node -p \"require('./native/sources.json').addon.join(' ')\")"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": [
        "NAPI_VERSION=8",
        "NAPI_CPP_EXCEPTIONS",
        "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS",
        "SIMD_ATTENTION_VERSION=\"<!(node -p \"require('./package.json').version\")\""
      ],
      "conditions": [
        ["target_arch=='x64'", {"dependencies": ["sa_avx2", "sa_avx512"]}],
        ["target_arch=='arm64'", {"dependencies": ["sa_neon"]}]
      ]
    }
  ],
  "conditions": [
    ["target_arch=='x64'", {
      "targets": [
        {
          "target_name": "sa_avx2",
          "type": "static_library",
          "sources": ["<!@(node -p \"require('./native/sources.json').avx2.join(' ')\")"],
          "cflags_cc": ["<!@(node -p \"require('./native/sources.json').flags.avx2.join(' ')\")"],
          "xcode_settings": {"OTHER_CPLUSPLUSFLAGS": ["-mavx2", "-mfma"]},
          "msvs_settings": {"VCCLCompilerTool": {"EnableEnhancedInstructionSet": "5"}}
        },
        {
          "target_name": "sa_avx512",
          "type": "static_library",
          "sources": ["<!@(node -p \"require('./native/sources.json').avx512.join(' ')\")"],
          "cflags_cc": ["<!@(node -p \"require('./native/sources.json').flags.avx512.join(' ')\")", "-Wno-uninitialized", "-Wno-maybe-uninitialized"],
          "xcode_settings": {"OTHER_CPLUSPLUSFLAGS": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx2", "-mfma"]}
        }
      ]
    }],
    ["target_arch=='arm64'", {
      "targets": [
        {
          "target_name": "sa_neon",
          "type": "static_library",
          "sources": ["<!@(node -p \"require('./native/sources.json').neon.join(' ')\")"]
        }
      ]
    }]
  ]
}
