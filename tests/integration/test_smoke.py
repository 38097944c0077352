def test_enrolment_assigns_basket_on_every_store(driver):
    assert driver.enrolled("M22-001", er="negative", prior="chemo-anti-her2")["basket"] == "IV"
