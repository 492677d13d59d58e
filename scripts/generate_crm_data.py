"""Write the shipped CRM catalog: ingredients, products, reviews and promotions under data/crm/.

    python scripts/generate_crm_data.py [--out data/crm] [--seed 7]

Deterministic (seeded). Brands and channel limits are hand-written YAML next to the output and are
not touched. Products are listed below by hand; Korean reviews are composed from fragments chosen
per skin type, product category, key ingredient, price tier and sentiment, so they vary in what
they talk about (texture, scent, price, packaging, effect) and in tone (positive, mixed, negative),
with the rating following the sentiment.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any

import yaml

OUT = Path(__file__).resolve().parent.parent / "data" / "crm"

# id: (Korean name, English aliases, what it does (Korean), what it does (English))
INGREDIENTS: dict[str, tuple[str, list[str], str, str]] = {
    "niacinamide": ("나이아신아마이드", ["niacinamide"], "맑은 피부 톤 케어", "brighter-looking tone"),
    "hyaluronic_acid": ("히알루론산", ["hyaluronic acid", "sodium hyaluronate"], "수분 공급", "hydration"),
    "ceramide": ("세라마이드", ["ceramide", "ceramides"], "피부 장벽 보습", "barrier moisture"),
    "centella": ("병풀 추출물", ["시카", "병풀", "centella", "cica"], "피부 진정", "soothing"),
    "madecassoside": ("마데카소사이드", ["madecassoside"], "피부 진정", "soothing"),
    "retinol": ("레티놀", ["retinol"], "탄력 케어", "firmness care"),
    "bakuchiol": ("바쿠치올", ["bakuchiol"], "순한 탄력 케어", "gentle firmness care"),
    "vitamin_c": ("비타민C", ["비타민 씨", "vitamin c", "ascorbic acid"], "생기 있는 피부 톤", "radiance"),
    "green_tea": ("녹차 추출물", ["녹차", "green tea"], "유수분 밸런스", "oil-water balance"),
    "tea_tree": ("티트리", ["tea tree"], "피지 케어", "sebum care"),
    "peptide": ("펩타이드", ["peptide", "peptides"], "탄력 케어", "firmness care"),
    "collagen": ("콜라겐", ["collagen"], "탄력 보습", "plumping moisture"),
    "squalane": ("스쿠알란", ["squalane"], "가벼운 보습막", "light moisture seal"),
    "aloe": ("알로에", ["aloe"], "수분 진정", "hydrating and soothing"),
    "heartleaf": ("어성초", ["heartleaf", "houttuynia"], "피지와 진정 케어", "sebum and soothing care"),
    "rice": ("쌀 추출물", ["쌀겨", "rice extract", "rice bran"], "맑은 피부결", "clear-looking texture"),
    "propolis": ("프로폴리스", ["propolis"], "영양과 윤기", "nourishment and glow"),
    "snail": ("달팽이 점액 여과물", ["달팽이", "snail mucin"], "보습과 결 케어", "moisture and texture"),
    "aha": ("AHA", ["aha", "glycolic acid"], "각질 케어", "exfoliation"),
    "bha": ("BHA", ["bha", "salicylic acid", "살리실산"], "모공 속 각질 케어", "pore exfoliation"),
    "panthenol": ("판테놀", ["panthenol", "vitamin b5"], "진정 보습", "soothing moisture"),
    "adenosine": ("아데노신", ["adenosine"], "주름 개선 기능성", "wrinkle-care functional ingredient"),
    "arbutin": ("알부틴", ["arbutin"], "미백 기능성", "brightening functional ingredient"),
    "mugwort": ("쑥 추출물", ["쑥추출물", "mugwort", "artemisia"], "피부 진정", "soothing"),
    "camellia_oil": ("동백 오일", ["동백", "camellia oil"], "윤기 보습", "glow and moisture"),
    "jojoba_oil": ("호호바 오일", ["호호바", "jojoba"], "가벼운 유분 보충", "light nourishment"),
    "rosehip_oil": ("로즈힙 오일", ["로즈힙", "rosehip"], "윤기 케어", "glow care"),
    "chamomile": ("카모마일", ["캐모마일", "chamomile"], "편안한 진정", "calming"),
    "shea_butter": ("시어버터", ["shea butter"], "풍부한 보습", "rich moisture"),
    "black_truffle": ("블랙 트러플", ["트러플", "black truffle", "truffle"], "영양 공급", "nourishment"),
    "caviar": ("캐비어 추출물", ["캐비어", "caviar"], "영양과 탄력", "nourishment and firmness"),
    "damask_rose": ("다마스크 장미수", ["장미수", "damask rose", "rose water"], "촉촉한 결", "dewy texture"),
    "licorice": ("감초 추출물", ["감초", "licorice"], "톤 케어", "tone care"),
    "allantoin": ("알란토인", ["allantoin"], "피부 보호", "skin comfort"),
    "zinc_oxide": ("징크옥사이드", ["징크 옥사이드", "zinc oxide"], "자외선 차단", "UV protection"),
    "charcoal": ("참숯 파우더", ["참숯", "charcoal"], "피지 흡착", "sebum absorption"),
    "lavender": ("라벤더 오일", ["라벤더", "lavender"], "편안한 향", "relaxing scent"),
    "beta_glucan": ("베타글루칸", ["beta-glucan", "beta glucan"], "보습 진정", "moisture and calm"),
    "pearl": ("진주 추출물", ["진주", "pearl extract"], "은은한 광채", "soft radiance"),
    "cacao": ("카카오 추출물", ["카카오", "cacao"], "달콤한 향과 보습", "sweet scent and moisture"),
}

SKIN = {"dry": "건성", "oily": "지성", "combination": "복합성", "sensitive": "민감성", "normal": "중성"}

# Category: (Korean, English, texture group, how to use (Korean))
CATEGORIES: dict[str, tuple[str, str, str, str]] = {
    "toner": ("토너", "toner", "liquid", "세안 후 화장솜이나 손에 덜어 피부 결을 따라 정돈합니다."),
    "essence": ("에센스", "essence", "liquid", "토너 다음 단계에서 두세 방울을 얼굴 전체에 펴 바릅니다."),
    "serum": ("세럼", "serum", "serum", "토너 후 적당량을 덜어 가볍게 두드려 흡수시킵니다."),
    "ampoule": ("앰플", "ampoule", "serum", "고민 부위에 한두 방울을 떨어뜨려 흡수시킵니다."),
    "cream": ("크림", "cream", "cream", "스킨케어 마지막 단계에서 적당량을 펴 바릅니다."),
    "eye_cream": ("아이크림", "eye cream", "cream", "눈가에 소량을 덜어 약지로 톡톡 두드립니다."),
    "cleanser": ("클렌저", "cleanser", "cleanser", "물과 함께 거품을 내어 부드럽게 마사지한 뒤 헹굽니다."),
    "sunscreen": ("선크림", "sunscreen", "sun", "외출 전 스킨케어 마지막 단계에서 넉넉히 바릅니다."),
    "mask": ("시트 마스크", "sheet mask", "mask", "세안 후 얼굴에 밀착시켜 잠시 두었다가 떼어 냅니다."),
    "pad": ("토너 패드", "toner pad", "mask", "세안 후 패드로 피부 결을 따라 닦아 냅니다."),
    "oil": (
        "페이셜 오일",
        "facial oil",
        "oil",
        "크림에 한 방울 섞거나 마지막 단계에 손바닥으로 감싸 줍니다.",
    ),
    "mist": ("미스트", "mist", "liquid", "얼굴에서 거리를 두고 수시로 뿌려 줍니다."),
    "cushion": ("쿠션", "cushion", "makeup", "퍼프에 묻혀 피부 바깥쪽으로 두드려 펴 바릅니다."),
    "tint": ("립 틴트", "lip tint", "makeup", "입술 안쪽부터 발라 그라데이션을 만듭니다."),
    "lip_balm": ("립밤", "lip balm", "lip", "건조할 때마다 입술에 부드럽게 바릅니다."),
    "body_lotion": ("바디로션", "body lotion", "cream", "샤워 후 물기가 남아 있을 때 몸 전체에 바릅니다."),
}

# brand -> (suffix, Korean name, English name, category, ingredients, volume, price (won), skin types)
P = tuple[str, str, str, str, list[str], str, int, list[str]]
PRODUCTS: dict[str, list[P]] = {
    "lumiere": [
        (
            "01",
            "뤼미에르 르 세럼 앱솔뤼",
            "Le Serum Absolu",
            "serum",
            ["caviar", "peptide", "squalane"],
            "30ml",
            189000,
            ["dry", "normal"],
        ),
        (
            "02",
            "뤼미에르 트러플 크림 로얄",
            "Truffle Creme Royale",
            "cream",
            ["black_truffle", "shea_butter", "ceramide"],
            "50ml",
            245000,
            ["dry", "normal"],
        ),
        (
            "03",
            "뤼미에르 로즈 토닉 로션",
            "Rose Tonic Lotion",
            "toner",
            ["damask_rose", "hyaluronic_acid"],
            "200ml",
            78000,
            ["dry", "normal", "combination"],
        ),
        (
            "04",
            "뤼미에르 아이 컨투어 크림",
            "Eye Contour Creme",
            "eye_cream",
            ["peptide", "adenosine", "caviar"],
            "15ml",
            132000,
            ["dry", "normal", "combination"],
        ),
        (
            "05",
            "뤼미에르 위일 프레시유즈",
            "Huile Precieuse",
            "oil",
            ["camellia_oil", "rosehip_oil", "squalane"],
            "30ml",
            118000,
            ["dry", "normal"],
        ),
        (
            "06",
            "뤼미에르 펄 에센스 로션",
            "Pearl Essence Lotion",
            "essence",
            ["pearl", "niacinamide", "hyaluronic_acid"],
            "150ml",
            96000,
            ["normal", "combination", "dry"],
        ),
        (
            "07",
            "뤼미에르 무스 클렌저 소브",
            "Mousse Cleanser Souple",
            "cleanser",
            ["damask_rose", "squalane"],
            "150ml",
            68000,
            ["dry", "normal", "combination"],
        ),
        (
            "08",
            "뤼미에르 앰플 뤼미너스",
            "Ampoule Lumineuse",
            "ampoule",
            ["vitamin_c", "arbutin", "pearl"],
            "20ml",
            158000,
            ["normal", "combination"],
        ),
        (
            "09",
            "뤼미에르 쿠션 꾸뛰르",
            "Cushion Couture",
            "cushion",
            ["pearl", "hyaluronic_acid", "zinc_oxide"],
            "15g",
            92000,
            ["dry", "normal"],
        ),
        (
            "10",
            "뤼미에르 마스크 소아레",
            "Masque Soiree",
            "mask",
            ["black_truffle", "collagen"],
            "5매",
            85000,
            ["dry", "normal"],
        ),
    ],
    "dewylab": [
        (
            "01",
            "듀이랩 세라마이드 배리어 크림",
            "Ceramide Barrier Cream",
            "cream",
            ["ceramide", "panthenol", "squalane"],
            "60ml",
            28000,
            ["dry", "sensitive", "normal"],
        ),
        (
            "02",
            "듀이랩 나이아신아마이드 톤 세럼",
            "Niacinamide Tone Serum",
            "serum",
            ["niacinamide", "licorice", "allantoin"],
            "30ml",
            26000,
            ["combination", "oily", "normal"],
        ),
        (
            "03",
            "듀이랩 히알루론 수분 토너",
            "Hyaluron Hydra Toner",
            "toner",
            ["hyaluronic_acid", "panthenol", "beta_glucan"],
            "250ml",
            22000,
            ["dry", "combination", "normal"],
        ),
        (
            "04",
            "듀이랩 레티놀 나이트 세럼",
            "Retinol Night Serum",
            "serum",
            ["retinol", "peptide", "squalane"],
            "30ml",
            34000,
            ["normal", "combination", "dry"],
        ),
        (
            "05",
            "듀이랩 BHA 포어 토너",
            "BHA Pore Toner",
            "toner",
            ["bha", "green_tea", "niacinamide"],
            "200ml",
            21000,
            ["oily", "combination"],
        ),
        (
            "06",
            "듀이랩 약산성 젤 클렌저",
            "Low pH Gel Cleanser",
            "cleanser",
            ["panthenol", "green_tea"],
            "200ml",
            18000,
            ["oily", "combination", "sensitive", "normal"],
        ),
        (
            "07",
            "듀이랩 비타민C 브라이트 앰플",
            "Vitamin C Bright Ampoule",
            "ampoule",
            ["vitamin_c", "niacinamide"],
            "20ml",
            32000,
            ["normal", "combination", "oily"],
        ),
        (
            "08",
            "듀이랩 데일리 무기자차 선크림",
            "Daily Mineral Sunscreen",
            "sunscreen",
            ["zinc_oxide", "ceramide", "panthenol"],
            "50ml",
            24000,
            ["sensitive", "dry", "normal", "combination"],
        ),
        (
            "09",
            "듀이랩 펩타이드 아이 세럼",
            "Peptide Eye Serum",
            "eye_cream",
            ["peptide", "adenosine", "hyaluronic_acid"],
            "15ml",
            29000,
            ["dry", "normal", "combination"],
        ),
        (
            "10",
            "듀이랩 AHA 리뉴 패드",
            "AHA Renew Pad",
            "pad",
            ["aha", "panthenol", "allantoin"],
            "60매",
            23000,
            ["normal", "oily", "combination"],
        ),
    ],
    "pocketglow": [
        (
            "01",
            "포켓글로우 촉촉 알로에 젤",
            "Aloe Daily Gel",
            "cream",
            ["aloe", "panthenol"],
            "300ml",
            7900,
            ["oily", "combination", "normal"],
        ),
        (
            "02",
            "포켓글로우 쌀 맑은 토너",
            "Rice Clear Toner",
            "toner",
            ["rice", "niacinamide"],
            "300ml",
            9900,
            ["normal", "combination", "dry"],
        ),
        (
            "03",
            "포켓글로우 데일리 수분 크림",
            "Daily Moisture Cream",
            "cream",
            ["hyaluronic_acid", "squalane", "shea_butter"],
            "100ml",
            12900,
            ["dry", "normal"],
        ),
        (
            "04",
            "포켓글로우 녹차 모공 클렌징폼",
            "Green Tea Pore Foam",
            "cleanser",
            ["green_tea", "charcoal"],
            "150ml",
            5900,
            ["oily", "combination"],
        ),
        (
            "05",
            "포켓글로우 비타 글로우 세럼",
            "Vita Glow Serum",
            "serum",
            ["vitamin_c", "niacinamide"],
            "50ml",
            13900,
            ["normal", "combination", "oily"],
        ),
        (
            "06",
            "포켓글로우 데일리 시트 마스크",
            "Daily Sheet Mask",
            "mask",
            ["hyaluronic_acid", "aloe"],
            "30매",
            15900,
            ["dry", "normal", "combination", "oily"],
        ),
        (
            "07",
            "포켓글로우 산뜻 선크림",
            "Fresh Sun Cream",
            "sunscreen",
            ["aloe", "green_tea"],
            "70ml",
            10900,
            ["oily", "combination", "normal"],
        ),
        (
            "08",
            "포켓글로우 프로폴리스 앰플",
            "Propolis Ampoule",
            "ampoule",
            ["propolis", "hyaluronic_acid"],
            "30ml",
            11900,
            ["dry", "normal"],
        ),
        (
            "09",
            "포켓글로우 시어 립밤",
            "Shea Lip Balm",
            "lip_balm",
            ["shea_butter", "jojoba_oil"],
            "10g",
            4900,
            ["dry", "normal", "sensitive"],
        ),
        (
            "10",
            "포켓글로우 바디 수분 로션",
            "Body Moisture Lotion",
            "body_lotion",
            ["shea_butter", "ceramide"],
            "400ml",
            9900,
            ["dry", "normal"],
        ),
    ],
    "hypemood": [
        (
            "01",
            "하이프무드 글로우 쿠션",
            "Glow Mood Cushion",
            "cushion",
            ["niacinamide", "hyaluronic_acid", "zinc_oxide"],
            "14g",
            26000,
            ["dry", "normal", "combination"],
        ),
        (
            "02",
            "하이프무드 젤리 립 틴트",
            "Jelly Lip Tint",
            "tint",
            ["jojoba_oil", "cacao"],
            "4g",
            14000,
            ["normal", "dry", "oily", "combination"],
        ),
        (
            "03",
            "하이프무드 시카 진정 패드",
            "Cica Calming Pad",
            "pad",
            ["centella", "madecassoside"],
            "70매",
            22000,
            ["sensitive", "oily", "combination"],
        ),
        (
            "04",
            "하이프무드 바이브 비타 앰플",
            "Vibe Vita Ampoule",
            "ampoule",
            ["vitamin_c", "arbutin"],
            "30ml",
            24000,
            ["normal", "combination", "oily"],
        ),
        (
            "05",
            "하이프무드 쿨링 선스틱",
            "Cooling Sun Stick",
            "sunscreen",
            ["aloe", "zinc_oxide"],
            "20g",
            19000,
            ["oily", "combination", "normal"],
        ),
        (
            "06",
            "하이프무드 스노우 달팽이 크림",
            "Snow Snail Cream",
            "cream",
            ["snail", "collagen"],
            "50ml",
            27000,
            ["dry", "normal"],
        ),
        (
            "07",
            "하이프무드 무드 미스트",
            "Mood Mist",
            "mist",
            ["damask_rose", "hyaluronic_acid"],
            "100ml",
            16000,
            ["dry", "normal", "combination"],
        ),
        (
            "08",
            "하이프무드 카카오 슬리핑 마스크",
            "Cacao Sleeping Mask",
            "mask",
            ["cacao", "shea_butter"],
            "80ml",
            21000,
            ["dry", "normal"],
        ),
        (
            "09",
            "하이프무드 숯 버블 클렌저",
            "Charcoal Bubble Cleanser",
            "cleanser",
            ["charcoal", "tea_tree"],
            "120ml",
            15000,
            ["oily", "combination"],
        ),
        (
            "10",
            "하이프무드 레티놀 부스팅 세럼",
            "Retinol Boost Serum",
            "serum",
            ["retinol", "bakuchiol"],
            "30ml",
            29000,
            ["normal", "combination"],
        ),
    ],
    "soopgyeol": [
        (
            "01",
            "숲결 어성초 진정 토너",
            "Heartleaf Calming Toner",
            "toner",
            ["heartleaf", "green_tea"],
            "250ml",
            19000,
            ["oily", "sensitive", "combination"],
        ),
        (
            "02",
            "숲결 쑥 에센스",
            "Mugwort Essence",
            "essence",
            ["mugwort", "panthenol"],
            "150ml",
            26000,
            ["sensitive", "dry", "normal"],
        ),
        (
            "03",
            "숲결 동백 페이스 오일",
            "Camellia Face Oil",
            "oil",
            ["camellia_oil", "jojoba_oil"],
            "30ml",
            32000,
            ["dry", "normal"],
        ),
        (
            "04",
            "숲결 녹차 약산성 클렌저",
            "Green Tea Gentle Cleanser",
            "cleanser",
            ["green_tea", "chamomile"],
            "200ml",
            17000,
            ["sensitive", "oily", "combination", "normal"],
        ),
        (
            "05",
            "숲결 바쿠치올 리추얼 세럼",
            "Bakuchiol Ritual Serum",
            "serum",
            ["bakuchiol", "squalane", "rosehip_oil"],
            "30ml",
            38000,
            ["normal", "dry", "combination"],
        ),
        (
            "06",
            "숲결 카모마일 수분 크림",
            "Chamomile Moisture Cream",
            "cream",
            ["chamomile", "shea_butter", "ceramide"],
            "60ml",
            29000,
            ["dry", "sensitive", "normal"],
        ),
        (
            "07",
            "숲결 라벤더 바디 로션",
            "Lavender Body Lotion",
            "body_lotion",
            ["lavender", "shea_butter"],
            "300ml",
            24000,
            ["dry", "normal"],
        ),
        (
            "08",
            "숲결 쌀겨 클리어 마스크",
            "Rice Bran Clear Mask",
            "mask",
            ["rice", "aloe"],
            "10매",
            16000,
            ["normal", "combination", "oily"],
        ),
        (
            "09",
            "숲결 논나노 선크림",
            "Non-nano Sun Cream",
            "sunscreen",
            ["zinc_oxide", "aloe", "chamomile"],
            "50ml",
            27000,
            ["sensitive", "dry", "normal"],
        ),
        (
            "10",
            "숲결 프로폴리스 밤",
            "Propolis Balm",
            "lip_balm",
            ["propolis", "shea_butter"],
            "15g",
            18000,
            ["dry", "normal", "sensitive"],
        ),
    ],
    "barecalm": [
        (
            "01",
            "베어캄 판테놀 진정 크림",
            "Panthenol Calming Cream",
            "cream",
            ["panthenol", "madecassoside", "ceramide"],
            "80ml",
            27000,
            ["sensitive", "dry", "normal"],
        ),
        (
            "02",
            "베어캄 마일드 젤 클렌저",
            "Mild Gel Cleanser",
            "cleanser",
            ["allantoin", "panthenol"],
            "200ml",
            16000,
            ["sensitive", "combination", "normal"],
        ),
        (
            "03",
            "베어캄 무향 수분 토너",
            "Fragrance-free Hydra Toner",
            "toner",
            ["beta_glucan", "hyaluronic_acid"],
            "300ml",
            19000,
            ["sensitive", "dry", "normal"],
        ),
        (
            "04",
            "베어캄 시카 리페어 세럼",
            "Cica Repair Serum",
            "serum",
            ["centella", "madecassoside", "panthenol"],
            "40ml",
            25000,
            ["sensitive", "oily", "combination"],
        ),
        (
            "05",
            "베어캄 세라마이드 아이크림",
            "Ceramide Eye Cream",
            "eye_cream",
            ["ceramide", "adenosine"],
            "20ml",
            24000,
            ["sensitive", "dry"],
        ),
        (
            "06",
            "베어캄 마일드 선 플루이드",
            "Mild Sun Fluid",
            "sunscreen",
            ["zinc_oxide", "allantoin"],
            "50ml",
            22000,
            ["sensitive", "combination", "normal"],
        ),
        (
            "07",
            "베어캄 진정 시트 마스크",
            "Calming Sheet Mask",
            "mask",
            ["centella", "panthenol"],
            "10매",
            15000,
            ["sensitive", "oily", "normal"],
        ),
        (
            "08",
            "베어캄 오트 바디 밤",
            "Oat Body Balm",
            "body_lotion",
            ["beta_glucan", "shea_butter"],
            "200ml",
            21000,
            ["sensitive", "dry"],
        ),
        (
            "09",
            "베어캄 베리어 미스트",
            "Barrier Mist",
            "mist",
            ["ceramide", "panthenol"],
            "120ml",
            17000,
            ["sensitive", "dry", "normal"],
        ),
        (
            "10",
            "베어캄 스쿠알란 오일",
            "Squalane Oil",
            "oil",
            ["squalane"],
            "30ml",
            23000,
            ["sensitive", "dry"],
        ),
    ],
}

PROMOTIONS: list[dict[str, Any]] = [
    {"id": "lum-holiday", "brand_id": "lumiere", "title": "홀리데이 아틀리에 컬렉션", "product_ids": [],
     "discount_percent": 15, "offer": "전 제품 15% 할인과 홀리데이 기프트 박스 포장",
     "start": "2026-12-01", "end": "2026-12-25", "terms": "150,000원 이상 구매 시 미니 세럼 증정, 온라인 공식몰 한정"},
    {"id": "lum-serum", "brand_id": "lumiere", "title": "르 세럼 앱솔뤼 프라이빗 위크", "product_ids": ["lum-01", "lum-08"],
     "discount_percent": 10, "offer": "세럼 구매 시 아이 컨투어 크림 5ml 증정",
     "start": "2026-11-10", "end": "2026-11-20", "terms": "회원 한정, 1인 1회"},
    {"id": "dew-barrier", "brand_id": "dewylab", "title": "장벽 루틴 위크", "product_ids": [],
     "discount_percent": 20, "offer": "전 제품 20% 할인",
     "start": "2026-10-05", "end": "2026-10-18", "terms": "30,000원 이상 무료배송, 쿠폰 중복 불가"},
    {"id": "dew-duo", "brand_id": "dewylab", "title": "세라마이드 크림 듀오", "product_ids": ["dew-01", "dew-03"],
     "discount_percent": 25, "offer": "2개 세트 구성 25% 할인",
     "start": "2026-11-01", "end": "2026-11-14", "terms": "세트 상품에 한함"},
    {"id": "pg-1plus1", "brand_id": "pocketglow", "title": "포켓 1+1 페스타", "product_ids": ["pg-01", "pg-02", "pg-04", "pg-09"],
     "discount_percent": None, "offer": "1+1 (같은 제품 하나 더)",
     "start": "2026-09-01", "end": "2026-09-07", "terms": "재고 소진 시 조기 종료"},
    {"id": "pg-weekly", "brand_id": "pocketglow", "title": "알뜰 위클리 세일", "product_ids": [],
     "discount_percent": 30, "offer": "전 제품 30% 할인",
     "start": "2026-09-15", "end": "2026-09-21", "terms": "20,000원 이상 무료배송"},
    {"id": "hm-drop", "brand_id": "hypemood", "title": "신상 드롭 데이", "product_ids": ["hm-01", "hm-02", "hm-10"],
     "discount_percent": 20, "offer": "신상 20% 할인과 포토카드 증정",
     "start": "2026-08-20", "end": "2026-08-31", "terms": "선착순 500명 포토카드 증정"},
    {"id": "hm-summer", "brand_id": "hypemood", "title": "썸머 무드 세일", "product_ids": [],
     "discount_percent": 15, "offer": "전 제품 15% 할인",
     "start": "2026-07-01", "end": "2026-07-14", "terms": "앱 전용 쿠폰 코드 MOOD15"},
    {"id": "sg-earth", "brand_id": "soopgyeol", "title": "지구의 날 리필 캠페인", "product_ids": [],
     "discount_percent": 10, "offer": "전 제품 10% 할인, 빈 용기 반납 시 적립금 2,000원",
     "start": "2026-04-15", "end": "2026-04-30", "terms": "빈 용기는 매장에서만 반납 가능"},
    {"id": "sg-forest", "brand_id": "soopgyeol", "title": "숲결 진정 라인 기획전", "product_ids": ["sg-01", "sg-02", "sg-06"],
     "discount_percent": 18, "offer": "진정 라인 18% 할인과 미니 토너 증정",
     "start": "2026-05-10", "end": "2026-05-24", "terms": "25,000원 이상 구매 시 증정"},
    {"id": "bc-calm", "brand_id": "barecalm", "title": "예민한 날 케어 위크", "product_ids": [],
     "discount_percent": 15, "offer": "전 제품 15% 할인",
     "start": "2026-03-02", "end": "2026-03-15", "terms": "공식몰 회원 한정, 무료배송"},
    {"id": "bc-sample", "brand_id": "barecalm", "title": "진정 크림 체험 키트", "product_ids": ["bc-01", "bc-04"],
     "discount_percent": None, "offer": "본품 구매 시 진정 크림 10ml 체험 키트 증정",
     "start": "2026-03-20", "end": "2026-04-05", "terms": "1인 1회, 수량 한정"},
]  # fmt: skip

BRAND_PREFIX = {"lumiere": "lum", "dewylab": "dew", "pocketglow": "pg", "hypemood": "hm",
                "soopgyeol": "sg", "barecalm": "bc"}  # fmt: skip


def products() -> list[dict[str, Any]]:
    rows = []
    for brand_id, items in PRODUCTS.items():
        for suffix, name, name_en, category, ingredients, volume, price, skin in items:
            cat_ko, cat_en, _, usage = CATEGORIES[category]
            benefits = list(dict.fromkeys(INGREDIENTS[i][2] for i in ingredients))
            rows.append({
                "id": f"{BRAND_PREFIX[brand_id]}-{suffix}", "brand_id": brand_id, "name": name,
                "name_en": name_en, "category": category, "category_ko": cat_ko, "category_en": cat_en,
                "key_ingredients": ingredients, "benefits": benefits, "volume": volume, "price": price,
                "skin_types": skin, "usage": usage,
            })  # fmt: skip
    return rows


# --- reviews -----------------------------------------------------------------------------------------

OPENERS = {
    "dry": [
        "건성이라 세안 후에 금방 당기는 편인데",
        "겨울만 되면 각질이 올라오는 건성 피부예요.",
        "속건조가 심해서 보습템을 계속 찾고 있었는데",
        "건조한 사무실에 오래 있다 보니 피부가 푸석해서",
    ],
    "oily": [
        "지성이라 오후만 되면 번들거리는데",
        "T존 유분이 많은 지성 피부라 무거운 건 못 쓰는데",
        "모공이랑 피지가 늘 고민인 지성이에요.",
        "여름엔 기름종이를 달고 사는 지성인데",
    ],
    "combination": [
        "T존은 번들, 볼은 건조한 복합성인데",
        "복합성이라 제품 고르기가 늘 애매한데",
        "계절 따라 피부 상태가 바뀌는 복합성이에요.",
        "이마는 기름지고 턱은 푸석한 복합성이라",
    ],
    "sensitive": [
        "민감성이라 새 제품은 늘 팔 안쪽에 먼저 테스트해 보는데",
        "조금만 자극돼도 붉어지는 편이라 조심스러웠는데",
        "예민한 피부라 성분표부터 꼼꼼히 보는 편인데",
        "환절기마다 뒤집어지는 민감성 피부예요.",
    ],
    "normal": [
        "피부 고민이 크진 않은 편인데",
        "중성 피부라 웬만한 건 잘 맞는데",
        "특별한 트러블은 없지만 관리 차원에서",
        "기초는 단순하게 쓰는 편인데",
    ],
}
TEXTURE = {
    "liquid": (
        [
            "물처럼 가벼운데 촉촉함이 꽤 남아요.",
            "흡수가 빨라서 바로 다음 단계 넘어가기 좋아요.",
            "여러 번 레이어링해도 끈적이지 않아요.",
        ],
        ["너무 묽어서 손에서 자꾸 흘러요.", "촉촉함이 금방 날아가는 느낌이에요."],
    ),
    "serum": (
        [
            "쫀쫀한데 바르고 나면 산뜻하게 마무리돼요.",
            "스포이드라 양 조절이 쉽고 흡수도 빨라요.",
            "몇 방울만으로도 얼굴 전체에 잘 펴져요.",
        ],
        ["바르고 나서 한참 동안 끈적임이 남아요.", "살짝 겉도는 느낌이 있어서 양을 줄여야 했어요."],
    ),
    "cream": (
        [
            "꾸덕한 듯한데 체온에 사르르 녹아요.",
            "아침에 일어나도 촉촉함이 남아 있어요.",
            "무겁지 않아서 메이크업 전에 발라도 밀리지 않아요.",
        ],
        ["저한텐 좀 무거워서 밤에만 써요.", "양 조절을 잘못하면 화장이 밀려요."],
    ),
    "cleanser": (
        [
            "거품이 쫀쫀하고 세안 후에 당김이 거의 없어요.",
            "순한데도 선크림까지 깔끔하게 지워져요.",
            "미끌거림 없이 개운하게 헹궈져요.",
        ],
        ["세안 후에 살짝 뽀득거리는 느낌이 있어요.", "거품이 금방 꺼져서 양을 많이 써야 해요."],
    ),
    "sun": (
        [
            "백탁이 거의 없고 피부 표현이 자연스러워요.",
            "눈시림이 없어서 매일 바르기 좋아요.",
            "바르고 나면 보송하게 마무리돼요.",
        ],
        ["백탁이 조금 있어서 톤이 떠 보여요.", "덧바르면 살짝 뭉쳐요."],
    ),
    "mask": (
        [
            "에센스가 넉넉해서 목까지 바르고도 남아요.",
            "밀착력이 좋아서 들뜨지 않아요.",
            "한 장씩 쓰기 편하고 결이 정돈돼요.",
        ],
        ["시트가 얇아서 찢어지기 쉬워요.", "에센스가 흘러서 조금 번거로워요."],
    ),
    "oil": (
        [
            "오일인데 번들거리지 않고 쏙 스며들어요.",
            "크림에 한 방울 섞으니 광이 예쁘게 나요.",
            "건조한 부위에만 발라도 하루 종일 편해요.",
        ],
        ["지성 부위엔 조금 무거워요.", "양 조절 못 하면 번들거려요."],
    ),
    "makeup": (
        [
            "얇게 발리는데 커버력도 적당해요.",
            "수정 화장 없이도 오후까지 잘 버텨요.",
            "발색이 예쁘고 오래가요.",
        ],
        ["시간이 지나면 조금 무너져요.", "컬러가 사진이랑 살짝 달라요."],
    ),
    "lip": (
        ["발림성이 부드럽고 각질이 덜 일어나요.", "자기 전에 바르면 아침까지 촉촉해요."],
        ["금방 닦여서 자주 덧발라야 해요.", "살짝 끈적여서 머리카락이 붙어요."],
    ),
}
EFFECT_POS = [
    "{ing}{i_ga} 들어 있어서 골랐는데 {benefit} 쪽으로 확실히 만족스러워요.",
    "꾸준히 쓰니까 {benefit} 면에서 달라진 게 느껴져요.",
    "{ing} 성분 덕분인지 피부가 한결 편안해요.",
    "요즘 {benefit} 때문에 손이 제일 자주 가는 제품이에요.",
]
EFFECT_NEG = [
    "{ing} 보고 샀는데 {benefit}{b_eun} 아직 잘 모르겠어요.",
    "기대했던 만큼 {benefit} 효과가 눈에 띄진 않아요.",
    "저한테는 {ing} 성분이 크게 와닿진 않았어요.",
]
SCENT = (
    ["향이 은은해서 기분 좋아져요.", "거의 무향이라 부담 없어요.", "잔향이 금방 사라져서 좋아요."],
    ["향이 생각보다 강해서 호불호 갈릴 것 같아요.", "특유의 풀냄새가 나서 처음엔 낯설었어요."],
)
PRICE = {
    "low": (
        [
            "이 가격에 이 정도면 완전 가성비예요.",
            "부담 없는 가격이라 쟁여 두고 써요.",
            "세일할 때 여러 개 사 두기 좋아요.",
        ],
        ["싼 맛에 샀는데 금방 써요.", "가격 대비 용량이 조금 아쉬워요."],
    ),
    "mid": (
        ["가격도 적당하고 용량도 넉넉해요.", "이 가격대에서 이 정도 성분이면 괜찮아요."],
        ["정가로 사기엔 조금 고민돼요.", "세일 아니면 손이 잘 안 가요."],
    ),
    "high": (
        [
            "비싸지만 쓰는 순간 기분이 좋아져서 아깝지 않아요.",
            "선물용으로도 손색없는 퀄리티예요.",
            "가격만큼 사용감이 고급스러워요.",
        ],
        ["가격이 너무 부담돼서 재구매는 고민 중이에요.", "이 가격이면 조금 더 극적인 변화를 기대했어요."],
    ),
}
PACKAGING = (
    [
        "용기가 예뻐서 화장대에 두기만 해도 기분 좋아요.",
        "펌프형이라 위생적이고 쓰기 편해요.",
        "뚜껑이 단단하게 닫혀서 여행 갈 때도 새지 않아요.",
        "용기가 재활용 가능한 소재라 마음이 편해요.",
    ],
    ["펌프가 가끔 헛돌아요.", "튜브라 끝까지 짜 쓰기가 어려워요.", "포장이 과한 느낌이에요."],
)
CLOSING_POS = [
    "재구매 의사 있어요!",
    "벌써 두 통째 쓰고 있어요.",
    "주변에도 추천했어요.",
    "계속 쓸 것 같아요.",
    "만족합니다.",
]
CLOSING_MIX = [
    "한 통은 다 써 보고 다시 판단할게요.",
    "무난하게 쓰기엔 괜찮아요.",
    "장단점이 확실한 제품이에요.",
]
CLOSING_NEG = ["재구매는 안 할 것 같아요.", "저랑은 잘 안 맞았어요.", "다른 분들은 잘 맞으시길 바라요."]
TROUBLE = [
    "바르고 나서 살짝 따끔거려서 사용을 멈췄어요.",
    "며칠 쓰니 좁쌀이 올라와서 중단했어요.",
    "볼 쪽이 조금 붉어졌어요.",
]


def _has_final(word: str) -> bool:
    last = word.strip()[-1]
    if "가" <= last <= "힣":
        return (ord(last) - 0xAC00) % 28 != 0
    return last.lower() in "lmnr"


def _particles(ing: str, benefit: str) -> dict[str, str]:
    return {"i_ga": "이" if _has_final(ing) else "가", "b_eun": "은" if _has_final(benefit) else "는"}


def _tier(price: int) -> str:
    return "low" if price < 16000 else ("mid" if price < 50000 else "high")


def _review(rng: random.Random, product: dict[str, Any], rating: int) -> tuple[str, str]:
    skin = rng.choice(product["skin_types"] if rng.random() < 0.8 else list(SKIN))
    group = CATEGORIES[product["category"]][2]
    ing_id = rng.choice(product["key_ingredients"])
    ing, benefit = INGREDIENTS[ing_id][0], INGREDIENTS[ing_id][2]
    pos_n = {5: 3, 4: 2, 3: 1, 2: 0, 1: 0}[rating]
    neg_n = {5: 0, 4: 1, 3: 1, 2: 2, 1: 2}[rating]
    slots = ["texture", "effect", "scent", "price", "packaging"]
    rng.shuffle(slots)
    parts = [rng.choice(OPENERS[skin])]
    for i, slot in enumerate(slots[: pos_n + neg_n]):
        positive = i < pos_n
        if slot == "texture":
            parts.append(rng.choice(TEXTURE[group][0 if positive else 1]))
        elif slot == "effect":
            parts.append(
                rng.choice(EFFECT_POS if positive else EFFECT_NEG).format(
                    ing=ing, benefit=benefit, **_particles(ing, benefit)
                )
            )
        elif slot == "scent":
            parts.append(rng.choice(SCENT[0 if positive else 1]))
        elif slot == "price":
            parts.append(rng.choice(PRICE[_tier(product["price"])][0 if positive else 1]))
        else:
            parts.append(rng.choice(PACKAGING[0 if positive else 1]))
    if rating == 1 or (rating == 2 and rng.random() < 0.5):
        parts.append(rng.choice(TROUBLE))
    parts.append(rng.choice(CLOSING_POS if rating >= 4 else CLOSING_MIX if rating == 3 else CLOSING_NEG))
    return " ".join(parts), skin


def reviews(items: list[dict[str, Any]], seed: int, per_product: int = 11) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for product in items:
        count = 0
        while count < per_product:
            rating = rng.choices([5, 4, 3, 2, 1], weights=[40, 30, 15, 10, 5])[0]
            text, skin = _review(rng, product, rating)
            if text in seen:
                continue
            seen.add(text)
            count += 1
            rows.append({"id": f"{product['id']}-r{count:02d}", "product_id": product["id"],
                         "brand_id": product["brand_id"], "rating": rating, "skin_type": skin, "text": text})  # fmt: skip
    return rows


def ingredients() -> dict[str, Any]:
    return {
        key: {"name": ko, "aliases": aliases, "benefit": benefit, "benefit_en": benefit_en}
        for key, (ko, aliases, benefit, benefit_en) in INGREDIENTS.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the CRM catalog data files.")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    items = products()
    header = "# Generated by `python scripts/generate_crm_data.py`; edit the generator, not this file.\n"
    (args.out / "ingredients.yaml").write_text(
        header + yaml.safe_dump({"ingredients": ingredients()}, allow_unicode=True, sort_keys=False),
        encoding="utf-8",
    )
    (args.out / "products.json").write_text(json.dumps(items, ensure_ascii=False, indent=1), encoding="utf-8")
    lines = [json.dumps(r, ensure_ascii=False) for r in reviews(items, args.seed)]
    (args.out / "reviews.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (args.out / "promotions.json").write_text(
        json.dumps(PROMOTIONS, ensure_ascii=False, indent=1), encoding="utf-8"
    )
    print(json.dumps({"products": len(items), "reviews": len(lines), "promotions": len(PROMOTIONS)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
